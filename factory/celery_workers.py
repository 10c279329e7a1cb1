"""The production profile's Celery workers: who they are (node names) and whether they are alive (a broker ping).

Imported by Airflow task processes (as `[core] hostname_callable`), so it stays tiny: Celery is imported only by
the health probe, which runs in the stack manager.
"""

from __future__ import annotations

import os
import socket

# Every worker listens on both queues, so any worker can take over any task of a worker that was lost; the
# `training` pool (not the queue) is what bounds heavy work. A dedicated training host would listen on `training`.
QUEUES = ("default", "training")
TRAINING_QUEUE = "training"
TRAINING_POOL = "training"

# Set in each worker's environment: the name its task instances record as `hostname`.
WORKER_NAME_VARIABLE = "FACTORY_CELERY_WORKER_NAME"


def node_name(worker: str) -> str:
    """Celery node name of a local worker, e.g. `worker-1@myhost`: unique per worker on one machine."""
    return f"{worker}@{socket.gethostname()}"


def worker_hostname() -> str:
    """`[core] hostname_callable` of the local workers: the Celery node name instead of the machine's name.

    Why: two workers on one machine share its hostname, and task instances would not say which one ran them. On
    hosts with one worker each (docker/compose.yaml) the default (the FQDN) already does.
    """
    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()


def ping(broker_url: str, key_prefix: str, node: str, timeout: float = 1.0) -> bool:
    """True if the Celery worker `node` answers a broker ping: it is connected and consuming, not just alive."""
    from celery import Celery

    app = Celery(broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": key_prefix}
    app.conf.broker_connection_retry_on_startup = False
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception:  # broker unreachable or refused: not healthy, and the stack says so with the worker's log
        return False
    finally:
        app.close()
    return any(node in reply for reply in replies)
