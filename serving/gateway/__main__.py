"""`python -m serving.gateway`: run one gateway replica with uvicorn (uvloop + httptools), configured from env.

The stack manager starts it this way (factory/services.py); in production, run as many replicas as needed behind
a load balancer: they share the routing state through Redis.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from serving.gateway.app import Gateway
from serving.gateway.config import GatewayConfig, GatewayConfigError


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = GatewayConfig.from_env()
    except GatewayConfigError as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        Gateway(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # per-request log lines cost more than the routing itself; metrics count requests
        proxy_headers=False,  # the client address is not used: skip the middleware on every request
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
