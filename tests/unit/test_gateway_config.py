"""Gateway configuration from the environment, and how the stack manager runs the gateway (settings, token,
service definition, Airflow connection)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from factory.credentials import load_or_create
from factory.services import all_services, connection_env, gateway
from factory.settings import SettingsError, StackSettings, isolated_settings
from serving.gateway.config import GatewayConfig, GatewayConfigError

TOKEN = "t" * 32


def test_the_defaults_need_only_a_token() -> None:
    config = GatewayConfig.from_env({"FACTORY_GATEWAY_TOKEN": TOKEN})

    assert config.tokens == (TOKEN,)
    assert config.pools == {"default": ("http://127.0.0.1:8000",)}
    assert (config.port, config.redis_prefix, config.sample_share) == (8090, "factory:gateway", 0.0)


def test_every_variable_is_read() -> None:
    config = GatewayConfig.from_env(
        {
            "FACTORY_GATEWAY_TOKEN": f"{TOKEN}, {'u' * 20}",
            "FACTORY_PORT_GATEWAY": "9100",
            "FACTORY_GATEWAY_POOLS": json.dumps({"blue": ["http://a:1", "http://b:2"], "green": "http://c:3"}),
            "FACTORY_REDIS_URL": "redis://cache:6379/2",
            "FACTORY_GATEWAY_REDIS_PREFIX": "prod:gateway",
            "FACTORY_GATEWAY_SAMPLE_SHARE": "0.05",
            "FACTORY_GATEWAY_SAMPLE_BUCKET": "factory-data",
            "FACTORY_GATEWAY_SAMPLE_INTERVAL": "2.5",
            "FACTORY_GATEWAY_MAX_BODY_BYTES": "4096",
        }
    )

    assert config.tokens == (TOKEN, "u" * 20)
    assert config.pools == {"blue": ("http://a:1", "http://b:2"), "green": ("http://c:3",)}
    assert (config.port, config.redis_url, config.redis_prefix) == (9100, "redis://cache:6379/2", "prod:gateway")
    assert (config.sample_share, config.sample_bucket, config.sample_max_interval) == (0.05, "factory-data", 2.5)
    assert config.max_body_bytes == 4096


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "FACTORY_GATEWAY_TOKEN is not set"),
        ({"FACTORY_GATEWAY_TOKEN": "short"}, "FACTORY_GATEWAY_TOKEN: Value error, token(s) [0] shorter than 16"),
        ({"FACTORY_GATEWAY_TOKEN": TOKEN, "FACTORY_GATEWAY_POOLS": "{blue"}, "FACTORY_GATEWAY_POOLS is not JSON"),
        ({"FACTORY_GATEWAY_TOKEN": TOKEN, "FACTORY_GATEWAY_POOLS": '{"blue": []}'}, "pools ['blue'] have no endpoints"),
        ({"FACTORY_GATEWAY_TOKEN": TOKEN, "FACTORY_GATEWAY_POOLS": '{"blue": 7}'}, "a URL or a list of URLs"),
        ({"FACTORY_GATEWAY_TOKEN": TOKEN, "FACTORY_PORT_GATEWAY": "http"}, "FACTORY_PORT_GATEWAY: Input should be"),
        ({"FACTORY_GATEWAY_TOKEN": TOKEN, "FACTORY_GATEWAY_SAMPLE_SHARE": "2"}, "FACTORY_GATEWAY_SAMPLE_SHARE"),
        ({"FACTORY_GATEWAY_TOKEN": TOKEN, "FACTORY_GATEWAY_SAMPLE_SHARE": "0.1"}, "needs a sample bucket"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.from_env(env)

    assert message in str(caught.value)


# ----- the stack manager's side ----------------------------------------------------------------------------------
def test_the_stack_runs_the_gateway_in_front_of_its_triton(tmp_path: Path) -> None:
    settings = StackSettings.from_env({"FACTORY_HOME": str(tmp_path), "FACTORY_PORT_GATEWAY": "18090"})
    creds, _ = load_or_create(tmp_path, {})

    service = gateway(settings, creds)

    assert service.argv[1:] == ["-m", "serving.gateway"]
    assert service.health_url == "http://127.0.0.1:18090/healthz" and service.ports == {"gateway": 18090}
    assert set(service.depends_on) == {"s3", "triton"}
    config = GatewayConfig.from_env(service.env)  # what the gateway process will read
    assert config.tokens == (creds.gateway_token,)
    assert config.pools == {"default": (settings.triton_http_url,)}
    assert (config.sample_bucket, config.sample_share, config.s3_endpoint) == (
        "factory-data",
        1.0,
        settings.s3_endpoint,
    )
    assert "gateway" in [s.name for s in all_services(settings, creds)]


def test_dags_reach_the_gateway_through_a_connection(tmp_path: Path) -> None:
    settings = StackSettings.from_env({"FACTORY_HOME": str(tmp_path)})
    creds, _ = load_or_create(tmp_path, {})

    conn = json.loads(connection_env(settings, creds)["AIRFLOW_CONN_FACTORY_GATEWAY"])

    assert (conn["host"], conn["port"], conn["password"]) == ("127.0.0.1", 8090, creds.gateway_token)
    assert conn["extra"] == {"redis_url": "redis://127.0.0.1:6379/0", "redis_prefix": "factory:gateway"}


def test_an_older_credentials_file_gets_a_gateway_token_and_keeps_the_rest(tmp_path: Path) -> None:
    first, _ = load_or_create(tmp_path, {})
    older = {key: value for key, value in asdict(first).items() if key != "gateway_token"}
    (tmp_path / "credentials.json").write_text(json.dumps(older))

    upgraded, created = load_or_create(tmp_path, {})
    again, _ = load_or_create(tmp_path, {})

    assert not created and len(upgraded.gateway_token) >= 32
    assert upgraded.s3_secret_key == first.s3_secret_key
    assert again.gateway_token == upgraded.gateway_token  # persisted, not regenerated
    assert load_or_create(tmp_path, {"FACTORY_GATEWAY_TOKEN": TOKEN})[0].gateway_token == TOKEN


def test_isolated_stacks_get_their_own_routing_keys(tmp_path: Path) -> None:
    first, second = isolated_settings(tmp_path / "a"), isolated_settings(tmp_path / "b")

    assert first.gateway_redis_prefix != second.gateway_redis_prefix
    assert first.gateway_redis_prefix != StackSettings.gateway_redis_prefix


def test_a_bad_sample_share_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"FACTORY_GATEWAY_SAMPLE_SHARE=1\.5 is outside 0-1"):
        StackSettings.from_env({"FACTORY_HOME": str(tmp_path), "FACTORY_GATEWAY_SAMPLE_SHARE": "1.5"})
