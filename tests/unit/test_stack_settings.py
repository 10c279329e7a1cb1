from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from factory import processes
from factory.credentials import load_or_create
from factory.settings import PROJECT_ROOT, Ports, SettingsError, StackSettings, read_dotenv


def test_defaults_and_overrides(tmp_path):
    settings = StackSettings.from_env({"FACTORY_HOME": str(tmp_path), "FACTORY_PORT_AIRFLOW": "18080"})
    assert settings.home == tmp_path.resolve()
    assert settings.profile == "embedded"
    assert settings.ports.airflow == 18080
    assert settings.airflow_url == "http://127.0.0.1:18080"
    assert settings.database_url("airflow") == f"sqlite:///{tmp_path.resolve() / 'airflow' / 'airflow.db'}"
    assert settings.triton_repository_uri == "s3://http://127.0.0.1:8333/triton-models/repository"


def test_production_profile_uses_postgres_databases(tmp_path):
    settings = StackSettings.from_env(
        {"FACTORY_HOME": str(tmp_path), "FACTORY_PROFILE": "production", "FACTORY_DB_PREFIX": "ci_factory"}
    )
    assert settings.database_url("mlflow") == "postgresql+psycopg2://postgres@127.0.0.1:5432/ci_factory_mlflow"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FACTORY_PORT_S3": "http"}, "FACTORY_PORT_S3='http' is not a port number"),
        ({"FACTORY_PORT_MLFLOW": "70000"}, "FACTORY_PORT_MLFLOW=70000 is outside 1-65535"),
        ({"FACTORY_PORT_MLFLOW": "8080"}, "FACTORY_PORT_AIRFLOW and FACTORY_PORT_MLFLOW are both 8080"),
        ({"FACTORY_PROFILE": "prod"}, "FACTORY_PROFILE='prod': choose one of embedded, production"),
        ({"FACTORY_DB_PREFIX": "x; drop"}, "FACTORY_DB_PREFIX='x; drop'"),
    ],
)
def test_bad_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StackSettings.from_env({"FACTORY_HOME": str(tmp_path), **env})


def test_dotenv_parsing(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# comment\n\nexport FACTORY_PORT_S3=9000   # S3 API\nFACTORY_PROFILE='production' # x\nA='a #b'\n")
    assert read_dotenv(path) == {"FACTORY_PORT_S3": "9000", "FACTORY_PROFILE": "production", "A": "a #b"}

    path.write_text("FACTORY_PORT_S3\n")
    with pytest.raises(SettingsError, match=r"\.env:1: expected KEY=VALUE"):
        read_dotenv(path)


def test_env_example_is_a_valid_dotenv(tmp_path):
    settings_env = read_dotenv(PROJECT_ROOT / ".env.example")
    settings = StackSettings.from_env({**settings_env, "FACTORY_HOME": str(tmp_path)})
    assert settings.ports == Ports()
    assert settings.triton_venv == PROJECT_ROOT / ".venv-triton"


def test_every_port_has_a_documented_variable():
    example = (PROJECT_ROOT / ".env.example").read_text()
    for name in Ports().as_dict():
        assert f"FACTORY_PORT_{name.upper()}=" in example


def test_credentials_generated_once_private_and_overridable(tmp_path):
    first, created = load_or_create(tmp_path, {})
    assert created
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600
    second, created_again = load_or_create(tmp_path, {})
    assert (second, created_again) == (first, False)
    overridden, _ = load_or_create(tmp_path, {"FACTORY_S3_SECRET_KEY": "from-env"})
    assert overridden.s3_secret_key == "from-env"
    assert json.loads((tmp_path / "credentials.json").read_text())["s3_secret_key"] == first.s3_secret_key


def test_corrupt_credentials_file_is_named(tmp_path):
    (tmp_path / "credentials.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"credentials\.json is not a valid credentials file"):
        load_or_create(tmp_path, {})


def test_port_in_use_names_port_and_owner():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(processes.PortInUseError) as error:
            processes.require_free_ports({"mlflow": port})
    message = str(error.value)
    assert f"port {port} (needed for mlflow) is already in use by pid {os.getpid()}" in message
    assert "FACTORY_PORT_MLFLOW" in message


def test_stop_process_kills_the_whole_family_and_survives_pid_reuse(tmp_path):
    pid_file = tmp_path / "svc.pid"
    # A parent that ignores SIGTERM and a child in its own session: both must be gone after stop.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "time.sleep(600)\n"
    )
    proc = processes.start_detached(
        [sys.executable, "-c", script], env=dict(os.environ), log_file=tmp_path / "svc.log", pid_file=pid_file,
        cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not proc.children() and time.monotonic() < deadline:
        time.sleep(0.1)
    family = [proc, *proc.children(recursive=True)]
    assert len(family) == 2
    assert processes.running_process(pid_file).pid == proc.pid
    assert processes.stop_process(pid_file, timeout=1.0) is True
    assert not any(p.is_running() and p.status() != "zombie" for p in family)
    assert not pid_file.exists()
    assert processes.stop_process(pid_file) is False


def test_stale_pid_file_is_not_mistaken_for_a_service(tmp_path):
    pid_file = tmp_path / "svc.pid"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # Same pid, different start time: a recycled pid must not count as our service.
        pid_file.write_text(json.dumps({"pid": sleeper.pid, "create_time": 1.0, "command": "old"}))
        assert processes.running_process(pid_file) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_tail_reads_the_last_lines(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert processes.tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]
    assert "no log at" in processes.tail(tmp_path / "missing.log")


def test_generated_credentials_are_announced_only_by_the_stack_that_created_them(tmp_path):
    from factory.stack import Stack

    settings = StackSettings.from_env({"FACTORY_HOME": str(tmp_path)})
    first = Stack(settings, env={}, report=lambda line: None)
    notice = first.credentials_notice()
    assert notice is not None and first.credentials.airflow_admin_password in notice
    assert Stack(settings, env={}, report=lambda line: None).credentials_notice() is None


def test_source_database_follows_the_profile(tmp_path):
    embedded = StackSettings.from_env({"FACTORY_HOME": str(tmp_path)})
    assert embedded.database_url("source") == f"sqlite:///{tmp_path.resolve() / 'source' / 'operational.db'}"
    production = StackSettings.from_env({"FACTORY_HOME": str(tmp_path), "FACTORY_PROFILE": "production"})
    assert production.database_url("source") == "postgresql+psycopg2://postgres@127.0.0.1:5432/factory_source"
