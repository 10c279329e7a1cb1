"""Triton hosts and gateway replicas of the local stack, as data: counts per profile, ports, pools, connections."""

from __future__ import annotations

import json

import pytest

from factory.credentials import load_or_create
from factory.services import connection_env, gateway, triton
from factory.settings import SettingsError, StackSettings, isolated_settings


def _settings(tmp_path, **env: str) -> StackSettings:
    return StackSettings.from_env({"FACTORY_HOME": str(tmp_path), **env})


def test_embedded_runs_one_of_each_exactly_as_before(tmp_path):
    settings = _settings(tmp_path)
    creds, _ = load_or_create(settings.home, {})
    assert (settings.triton_hosts, settings.gateway_replicas, settings.replica_ports) == (1, 1, ())
    first = triton(settings, creds)
    assert (first.name, first.ports) == ("triton", {"triton_http": 8000, "triton_grpc": 8001, "triton_metrics": 8002})
    assert first.health_url == "http://127.0.0.1:8000/v2/health/ready"
    replica = gateway(settings, creds)
    assert (replica.name, replica.ports, replica.depends_on) == ("gateway", {"gateway": 8090}, ("s3", "triton"))
    assert json.loads(replica.env["FACTORY_GATEWAY_POOLS"]) == {"default": ["http://127.0.0.1:8000"]}


def test_production_runs_two_hosts_behind_two_replicas_on_one_pool_and_one_routing_state(tmp_path):
    settings = _settings(tmp_path, FACTORY_PROFILE="production")
    creds, _ = load_or_create(settings.home, {})
    hosts = ["http://127.0.0.1:8000", "http://127.0.0.1:8010"]
    assert settings.triton_http_urls == hosts
    second = triton(settings, creds, 2)
    assert second.name == "triton-2"
    assert second.ports == {"triton_http_2": 8010, "triton_grpc_2": 8011, "triton_metrics_2": 8012}
    assert f"--model-repository={settings.triton_repository_uri}" in second.argv and "--http-port=8010" in second.argv
    replicas = [gateway(settings, creds, replica) for replica in (1, 2)]
    assert [r.name for r in replicas] == ["gateway", "gateway-2"]
    assert [r.env["FACTORY_GATEWAY_ADVERTISE_URL"] for r in replicas] == settings.gateway_urls
    assert len({r.env["FACTORY_GATEWAY_REPLICA_ID"] for r in replicas}) == 2
    assert {r.env["FACTORY_GATEWAY_REDIS_PREFIX"] for r in replicas} == {settings.gateway_redis_prefix}
    assert all(json.loads(r.env["FACTORY_GATEWAY_POOLS"]) == {"default": hosts} for r in replicas)
    assert all(r.depends_on == ("s3", "triton", "triton-2") for r in replicas)
    conn = json.loads(connection_env(settings, creds)["AIRFLOW_CONN_FACTORY_TRITON"])
    assert conn["extra"]["pools"] == {"default": hosts} and conn["port"] == 8000


def test_counts_and_ports_are_settings(tmp_path):
    settings = _settings(
        tmp_path, FACTORY_TRITON_HOSTS="3", FACTORY_GATEWAY_REPLICAS="1", FACTORY_PORT_TRITON_HTTP_3="9100"
    )
    assert settings.triton_http_urls == ["http://127.0.0.1:8000", "http://127.0.0.1:8010", "http://127.0.0.1:9100"]
    assert settings.triton_ports(3) == {"triton_http_3": 9100, "triton_grpc_3": 8021, "triton_metrics_3": 8022}
    assert settings.gateway_urls == ["http://127.0.0.1:8090"]


def test_isolated_settings_give_every_host_and_replica_a_free_port(tmp_path):
    settings = isolated_settings(tmp_path, FACTORY_PROFILE="production", FACTORY_TRITON_HOSTS="3")
    ports = [*settings.ports.as_dict().values(), *dict(settings.replica_ports).values()]
    assert len(ports) == len(set(ports)) == 14 + 2 * 3 + 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FACTORY_TRITON_HOSTS": "0"}, "FACTORY_TRITON_HOSTS='0' must be a positive integer"),
        ({"FACTORY_GATEWAY_REPLICAS": "two"}, "FACTORY_GATEWAY_REPLICAS='two' must be a positive integer"),
        (
            {"FACTORY_PROFILE": "production", "FACTORY_PORT_GATEWAY_2": "8080"},
            "FACTORY_PORT_GATEWAY_2 and FACTORY_PORT_AIRFLOW are both 8080",
        ),
        ({"FACTORY_TRITON_HOSTS": "2", "FACTORY_PORT_TRITON_GRPC_2": "x"}, "FACTORY_PORT_TRITON_GRPC_2='x' is not a"),
    ],
)
def test_bad_fleet_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        _settings(tmp_path, **env)
