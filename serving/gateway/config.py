"""Gateway configuration, from environment variables only (the stack manager or a container sets them).

FACTORY_GATEWAY_TOKEN           required: bearer token(s) clients must send; comma-separated to rotate
FACTORY_GATEWAY_HOST            bind address (127.0.0.1)
FACTORY_PORT_GATEWAY            port (8090)
FACTORY_GATEWAY_POOLS           JSON {"pool": ["http://host:port", ...]}: the Triton fleets routes can name
                                ({"default": ["http://127.0.0.1:8000"]})
FACTORY_REDIS_URL               routing state (redis://127.0.0.1:6379/0)
FACTORY_GATEWAY_REDIS_PREFIX    key prefix of the routing state (factory:gateway)
FACTORY_GATEWAY_REPLICA_ID      this replica's id in the routing state (<hostname>-<pid>)
FACTORY_GATEWAY_ADVERTISE_URL  where rollouts reach this replica's /metrics (http://<host>:<port>)
FACTORY_GATEWAY_POLL_INTERVAL   seconds between routing-state polls (0.2)
FACTORY_GATEWAY_MAX_BODY_BYTES  larger request bodies are refused with 413 (1048576)
FACTORY_GATEWAY_UPSTREAM_TIMEOUT  seconds to wait for Triton (10)
FACTORY_GATEWAY_SAMPLE_SHARE    share of requests+predictions sampled for monitoring, 0..1 (0.0)
FACTORY_GATEWAY_SAMPLE_BUCKET   S3 bucket of the samples (needed when the share > 0, unless SAMPLE_DIR)
FACTORY_GATEWAY_SAMPLE_PREFIX   key prefix of the samples (gateway-samples)
FACTORY_GATEWAY_SAMPLE_DIR      write samples to this directory instead of S3 (development)
FACTORY_GATEWAY_SAMPLE_INTERVAL seconds between sample flushes (10; also flushed every 2000 records)
FACTORY_GATEWAY_S3_ENDPOINT     S3 endpoint URL (SeaweedFS locally); keys from AWS_ACCESS_KEY_ID/...
FACTORY_GATEWAY_SHADOW_MAX_INFLIGHT  mirrored requests in flight before more are dropped (32)
FACTORY_GATEWAY_MAX_INFLIGHT    Triton calls in flight per model version and pool before concurrent requests
                                are coalesced into shared calls (2; serving/gateway/batching.py)
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MIN_TOKEN_LENGTH = 16


class GatewayConfigError(ValueError):
    """A gateway setting is missing or malformed; the message names the variable."""


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: tuple[str, ...] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    pools: dict[str, tuple[str, ...]] = Field(default_factory=lambda: {"default": ("http://127.0.0.1:8000",)})
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "factory:gateway"
    replica_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    poll_interval: float = Field(default=0.2, gt=0, le=10)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    upstream_timeout: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=64, ge=1)
    sample_share: float = Field(default=0.0, ge=0, le=1)
    sample_bucket: str | None = None
    sample_prefix: str = "gateway-samples"
    sample_dir: Path | None = None
    sample_max_records: int = Field(default=2_000, ge=1)
    sample_max_interval: float = Field(default=10.0, gt=0)
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    shadow_max_inflight: int = Field(default=32, ge=1)
    max_inflight_per_target: int = Field(default=2, ge=1)
    advertise_url: str | None = None

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, tokens: tuple[str, ...]) -> tuple[str, ...]:
        short = [index for index, token in enumerate(tokens) if len(token) < MIN_TOKEN_LENGTH]
        if short:
            raise ValueError(f"token(s) {short} shorter than {MIN_TOKEN_LENGTH} characters")
        return tokens

    @field_validator("pools")
    @classmethod
    def _check_pools(cls, pools: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if not pools:
            raise ValueError("at least one pool is needed")
        empty = sorted(name for name, urls in pools.items() if not urls)
        if empty:
            raise ValueError(f"pools {empty} have no endpoints")
        return pools

    @model_validator(mode="after")
    def _check_sampling(self) -> GatewayConfig:
        if self.sample_share > 0 and self.sample_bucket is None and self.sample_dir is None:
            raise ValueError("sample_share > 0 needs a sample bucket (or a sample directory)")
        if self.advertise_url is None:  # a wildcard bind is not an address anyone can call: use the host name
            host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
            object.__setattr__(self, "advertise_url", f"http://{host}:{self.port}")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env
        variables = {
            "host": "FACTORY_GATEWAY_HOST",
            "port": "FACTORY_PORT_GATEWAY",
            "redis_url": "FACTORY_REDIS_URL",
            "redis_prefix": "FACTORY_GATEWAY_REDIS_PREFIX",
            "replica_id": "FACTORY_GATEWAY_REPLICA_ID",
            "poll_interval": "FACTORY_GATEWAY_POLL_INTERVAL",
            "max_body_bytes": "FACTORY_GATEWAY_MAX_BODY_BYTES",
            "upstream_timeout": "FACTORY_GATEWAY_UPSTREAM_TIMEOUT",
            "sample_share": "FACTORY_GATEWAY_SAMPLE_SHARE",
            "sample_bucket": "FACTORY_GATEWAY_SAMPLE_BUCKET",
            "sample_prefix": "FACTORY_GATEWAY_SAMPLE_PREFIX",
            "sample_dir": "FACTORY_GATEWAY_SAMPLE_DIR",
            "sample_max_interval": "FACTORY_GATEWAY_SAMPLE_INTERVAL",
            "s3_endpoint": "FACTORY_GATEWAY_S3_ENDPOINT",
            "s3_region": "AWS_DEFAULT_REGION",
            "shadow_max_inflight": "FACTORY_GATEWAY_SHADOW_MAX_INFLIGHT",
            "max_inflight_per_target": "FACTORY_GATEWAY_MAX_INFLIGHT",
            "advertise_url": "FACTORY_GATEWAY_ADVERTISE_URL",
        }
        values: dict[str, object] = {name: env[var] for name, var in variables.items() if env.get(var)}
        tokens = [token.strip() for token in env.get("FACTORY_GATEWAY_TOKEN", "").split(",") if token.strip()]
        if not tokens:
            raise GatewayConfigError("FACTORY_GATEWAY_TOKEN is not set: the gateway refuses to run without a token")
        values["tokens"] = tuple(tokens)
        if env.get("FACTORY_GATEWAY_POOLS"):
            values["pools"] = _parse_pools(env["FACTORY_GATEWAY_POOLS"])
        variables["tokens"] = "FACTORY_GATEWAY_TOKEN"
        variables["pools"] = "FACTORY_GATEWAY_POOLS"
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{variables.get(str(issue['loc'][0]), issue['loc'][0]) if issue['loc'] else 'gateway'}: {issue['msg']}"
                for issue in error.errors()
            )
            raise GatewayConfigError(f"invalid gateway configuration: {problems}") from None


def _parse_pools(raw: str) -> dict[str, tuple[str, ...]]:
    try:
        pools = json.loads(raw)
    except json.JSONDecodeError as error:
        raise GatewayConfigError(f"FACTORY_GATEWAY_POOLS is not JSON ({error}): {raw!r}") from None
    if not isinstance(pools, dict):
        raise GatewayConfigError('FACTORY_GATEWAY_POOLS must be an object like {"default": ["http://host:port"]}')
    result = {}
    for name, urls in pools.items():
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise GatewayConfigError(f"FACTORY_GATEWAY_POOLS[{name!r}] must be a URL or a list of URLs")
        result[name] = tuple(urls)
    return result
