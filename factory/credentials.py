"""Credentials of the local stack: generated once, kept in the state directory, never in code.

Environment variables win over the stored values, so a deployment can inject its own secrets; a fresh machine gets
random ones written atomically with mode 0600, and `first_start` tells the CLI to print them once.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

ENV_OVERRIDES = {
    "s3_access_key": "FACTORY_S3_ACCESS_KEY",
    "s3_secret_key": "FACTORY_S3_SECRET_KEY",
    "airflow_admin_password": "FACTORY_AIRFLOW_ADMIN_PASSWORD",
    "gateway_token": "FACTORY_GATEWAY_TOKEN",
}


@dataclass(frozen=True)
class Credentials:
    s3_access_key: str
    s3_secret_key: str
    airflow_admin_password: str
    airflow_jwt_secret: str
    airflow_api_secret_key: str
    airflow_fernet_key: str
    airflow_admin_user: str = "admin"
    gateway_token: str = ""  # bearer token of the serving gateway (added later: older files lack it)


def _generate() -> Credentials:
    return Credentials(
        s3_access_key="factory" + secrets.token_hex(6),
        s3_secret_key=secrets.token_urlsafe(30),
        airflow_admin_password=secrets.token_urlsafe(12),
        airflow_jwt_secret=secrets.token_urlsafe(32),
        airflow_api_secret_key=secrets.token_urlsafe(32),
        airflow_fernet_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        gateway_token=secrets.token_urlsafe(32),
    )


def write_private_json(path: Path, payload: object) -> None:
    """Write JSON readable by the owner only, atomically (a crash never leaves half a secrets file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def load_or_create(home: Path, env: Mapping[str, str]) -> tuple[Credentials, bool]:
    """Return the stack's credentials and whether they were created just now."""
    path = home / "credentials.json"
    created = not path.exists()
    if created:
        stored = _generate()
        write_private_json(path, asdict(stored))
    else:
        try:
            stored = Credentials(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path} is not a valid credentials file ({error}); remove it to regenerate") from None
        if not stored.gateway_token:  # a file from before the gateway: add its token, keep everything else
            stored = Credentials(**{**asdict(stored), "gateway_token": secrets.token_urlsafe(32)})
            write_private_json(path, asdict(stored))
    overrides = {field: env[var] for field, var in ENV_OVERRIDES.items() if env.get(var)}
    return Credentials(**{**asdict(stored), **overrides}), created
