"""Routing state shared by every gateway replica, in Redis: compare-and-set writes, versioned, polled.

Key layout (all under one prefix, so a test or a second stack can use its own):

    <prefix>:routes:<model>      hash  state_version -> int, table -> RouteTable JSON (routes + bucket allocation)
    <prefix>:models              set   models that have routes
    <prefix>:epoch               int   bumped by every change of any model
    <prefix>:history:<model>     list  previous tables, newest first (capped): the audit trail of routing
    <prefix>:replicas            zset  replica id -> last heartbeat (unix seconds)
    <prefix>:replica:<id>        hash  model -> state_version that replica applies, `_url` -> where it listens
                                       (expires without heartbeat)

A change is one Lua script (atomic on the Redis server): it checks the model's state_version against the one
the writer read, writes the new table, appends the history and bumps the epoch. Replicas poll the epoch (one
GET every `poll_interval`, 0.2 s by default) and reload the tables only when it moved, so a change reaches
every replica within a poll interval without a pub/sub connection to babysit. Each replica then reports the
state_version it applies, and `wait_until_applied` lets a rollout wait for every live replica before it, say,
unloads the version the old routes pointed at (the zero-downtime order: route away, confirm, then unload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from serving.gateway.routing import CompiledRoutes, Routes, RouteTable, check_model_name, plan_table

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "factory:gateway"
HISTORY_LENGTH = 200

# KEYS: routes, models, epoch, history. ARGV: expected state_version, new state_version, table JSON, model,
# history length. Returns {1, new} on success, {0, current} when the state moved on.
_SET_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'state_version') or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
redis.call('HSET', KEYS[1], 'state_version', ARGV[2], 'table', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('LPUSH', KEYS[4], ARGV[3])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
redis.call('INCR', KEYS[3])
return {1, tonumber(ARGV[2])}
"""
# KEYS: routes, models, epoch. ARGV: expected state_version, model.
_DELETE_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'state_version') or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
return {1, 0}
"""


class RouteStateError(RuntimeError):
    """Redis is unreachable or holds something unreadable; the message names the server or key."""


class RouteConflict(RouteStateError):
    """The routes changed since the caller read them: re-read, re-decide, retry."""

    def __init__(self, model: str, expected: int, current: int) -> None:
        super().__init__(
            f"routes of {model!r} are at state_version {current}, not {expected} as expected: "
            "another writer changed them; read them again and retry"
        )
        self.model = model
        self.expected = expected
        self.current = current


class RouteKeys:
    def __init__(self, prefix: str) -> None:
        if not prefix or any(char.isspace() for char in prefix):
            raise ValueError(f"redis key prefix {prefix!r} must be non-empty without spaces")
        self.prefix = prefix
        self.models = f"{prefix}:models"
        self.epoch = f"{prefix}:epoch"
        self.replicas = f"{prefix}:replicas"

    def routes(self, model: str) -> str:
        return f"{self.prefix}:routes:{model}"

    def history(self, model: str) -> str:
        return f"{self.prefix}:history:{model}"

    def replica(self, replica_id: str) -> str:
        return f"{self.prefix}:replica:{replica_id}"


def redacted(url: str) -> str:
    """The Redis URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def parse_table(raw: bytes | str, key: str) -> RouteTable:
    try:
        return RouteTable.model_validate_json(raw)
    except ValidationError as error:
        raise RouteStateError(f"{key} holds an unreadable route table: {error}") from None


class RouteStore:
    """The API rollouts use: read routes, change them with compare-and-set, check what replicas apply."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = DEFAULT_PREFIX) -> None:
        self.url = redacted(url)
        self.keys = RouteKeys(prefix)
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._set = self._redis.register_script(_SET_SCRIPT)
        self._delete = self._redis.register_script(_DELETE_SCRIPT)

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> RouteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except redis.RedisError as error:
            raise RouteStateError(f"{what}: Redis at {self.url} failed: {error}") from None

    def get_routes(self, model: str) -> RouteTable | None:
        """The model's current table (None when it has no routes)."""
        key = self.keys.routes(check_model_name(model))
        raw = self._call(f"reading {key}", lambda: self._redis.hget(key, "table"))
        return None if raw is None else parse_table(raw, key)

    def set_routes(self, model: str, routes: Routes, expected_version: int, *, reason: str = "") -> RouteTable:
        """Replace the model's routes if its state_version is still `expected_version` (0: no routes yet).

        The new allocation is computed from the table at `expected_version`, so keys move only as far as the
        weight change requires. Raises RouteConflict when another writer got there first.
        """
        current = self.get_routes(model)
        current_version = current.state_version if current else 0
        if current_version != expected_version:
            raise RouteConflict(model, expected_version, current_version)
        table = plan_table(model, current, routes, reason=reason)
        keys = [self.keys.routes(model), self.keys.models, self.keys.epoch, self.keys.history(model)]
        args = [expected_version, table.state_version, table.model_dump_json(), model, HISTORY_LENGTH]
        applied, state = self._call(f"writing routes of {model!r}", lambda: self._set(keys=keys, args=args))
        if not applied:
            raise RouteConflict(model, expected_version, int(state))
        return table

    def delete_routes(self, model: str, expected_version: int) -> None:
        """Remove the model's routes (the gateway then answers 404 for it); compare-and-set like set_routes."""
        keys = [self.keys.routes(check_model_name(model)), self.keys.models, self.keys.epoch]
        applied, state = self._call(
            f"deleting routes of {model!r}", lambda: self._delete(keys=keys, args=[expected_version, model])
        )
        if not applied:
            raise RouteConflict(model, expected_version, int(state))

    def models(self) -> list[str]:
        return sorted(
            member.decode() for member in self._call("listing models", lambda: self._redis.smembers(self.keys.models))
        )

    def history(self, model: str, limit: int = 20) -> list[RouteTable]:
        """Tables the model had, newest first (the current one included)."""
        key = self.keys.history(check_model_name(model))
        raw = self._call(f"reading {key}", lambda: self._redis.lrange(key, 0, limit - 1))
        return [parse_table(item, key) for item in raw]

    def applied_versions(self, model: str) -> dict[str, int]:
        """Live replicas (heartbeat within their expiry) -> the state_version of `model` each applies (0: none)."""
        now = time.time()
        replicas = self._call(
            "listing replicas", lambda: self._redis.zrangebyscore(self.keys.replicas, now - REPLICA_TTL, "+inf")
        )
        result = {}
        for member in replicas:
            replica = member.decode()
            value = self._call("reading replica state", lambda r=replica: self._redis.hget(self.keys.replica(r), model))
            result[replica] = int(value or 0)
        return result

    def replica_urls(self) -> dict[str, str]:
        """Live replicas -> the URL each advertises (replicas started without one are left out)."""
        result = {}
        for replica in self.applied_versions("_"):
            url = self._call("reading replica url", lambda r=replica: self._redis.hget(self.keys.replica(r), URL_FIELD))
            if url:
                result[replica] = url.decode()
        return result

    def wait_until_applied(
        self, model: str, state_version: int, *, timeout: float = 10.0, min_replicas: int = 1
    ) -> dict[str, int]:
        """Block until every live replica (at least `min_replicas`) applies `state_version` or later."""
        deadline = time.monotonic() + timeout
        while True:
            applied = self.applied_versions(model)
            if len(applied) >= min_replicas and all(version >= state_version for version in applied.values()):
                return applied
            if time.monotonic() > deadline:
                raise RouteStateError(
                    f"after {timeout:g} s, replicas apply {applied or 'nothing (no live replica)'} for {model!r}; "
                    f"waiting for state_version {state_version} on at least {min_replicas} replica(s)"
                )
            time.sleep(0.05)


URL_FIELD = "_url"  # in a replica's hash; model names cannot start with "_", so it never shadows a model
REPLICA_TTL = 10.0  # seconds without heartbeat after which a replica no longer counts as live


class RouteWatcher:
    """The gateway's view of the routing state: polls the epoch, reloads on change, reports what it applies.

    `tables` is replaced as a whole on every change (one assignment), so a request sees either the old or the
    new routes of a model, never a mix. While Redis is unreachable the last tables keep serving (routing is
    frozen, not lost) and `error` says why; `on_change(model)` runs for every model whose table changed.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        replica_id: str,
        *,
        poll_interval: float = 0.2,
        on_change: Callable[[str, CompiledRoutes | None], None] | None = None,
        advertise_url: str | None = None,
    ) -> None:
        """`advertise_url`: where this replica is reachable, so a rollout can scrape every replica's metrics."""
        self.url = redacted(url)
        self.advertise_url = advertise_url
        self.keys = RouteKeys(prefix)
        self.replica_id = replica_id
        self.poll_interval = poll_interval
        self.on_change = on_change
        self.tables: dict[str, CompiledRoutes] = {}
        self.loaded = False
        self.error: str | None = None
        self.last_success = 0.0
        self._epoch: bytes | None = None
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, initial_timeout: float = 2.0) -> None:
        """Load once (bounded wait, so a gateway without Redis still starts and says why), then poll."""
        try:
            await asyncio.wait_for(self.refresh(), initial_timeout)
        except TimeoutError:
            self.error = f"Redis at {self.url} did not answer within {initial_timeout:g} s"
            log.warning("routing state not loaded: %s", self.error)
        self._task = asyncio.create_task(self._poll(), name="route-watcher")

    async def stop(self) -> None:
        """Stop polling and withdraw this replica. redis-py can swallow a cancellation that lands inside a
        command, so the poll loop also checks a flag, and every wait here is bounded."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self.poll_interval + 5)
        with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
            async with asyncio.timeout(2):
                await self._redis.zrem(self.keys.replicas, self.replica_id)
                await self._redis.delete(self.keys.replica(self.replica_id))
        with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
            async with asyncio.timeout(2):
                await self._redis.aclose()

    async def _poll(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception:  # a dead poller would freeze routing silently: log, keep polling
                log.exception("routing state: refresh failed; keeping the last known routes")

    async def refresh(self) -> bool:
        """One poll: reload the tables if the epoch moved; heartbeat. Returns whether anything changed."""
        try:
            epoch = await self._redis.get(self.keys.epoch)
            changed = epoch != self._epoch or not self.loaded
            if changed:
                await self._reload()
                self._epoch = epoch
            await self._heartbeat()
        except (redis.RedisError, OSError) as error:
            if self.error is None:
                log.error("routing state: Redis at %s failed (%s); serving the last known routes", self.url, error)
            self.error = f"Redis at {self.url}: {error}"
            return False
        if self.error is not None:
            log.info("routing state: Redis at %s is back", self.url)
        self.error = None
        self.loaded = True
        self.last_success = time.monotonic()
        return changed

    async def _reload(self) -> None:
        models = sorted(member.decode() for member in await self._redis.smembers(self.keys.models))
        async with self._redis.pipeline(transaction=False) as pipe:
            for model in models:
                pipe.hget(self.keys.routes(model), "table")
            raws = await pipe.execute()
        tables: dict[str, CompiledRoutes] = {}
        for model, raw in zip(models, raws, strict=True):
            if raw is None:
                continue
            previous = self.tables.get(model)
            try:
                table = parse_table(raw, self.keys.routes(model))
            except RouteStateError as error:
                log.error("%s; keeping the previous routes of %s", error, model)
                if previous is not None:
                    tables[model] = previous
                continue
            if previous is not None and previous.state_version == table.state_version:
                tables[model] = previous
            else:
                tables[model] = CompiledRoutes(table)
        old, self.tables = self.tables, tables
        if self.on_change is not None:
            for model in sorted(set(old) | set(tables)):
                if old.get(model) is not tables.get(model):
                    self.on_change(model, tables.get(model))

    async def _heartbeat(self) -> None:
        key = self.keys.replica(self.replica_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if self.tables:
                pipe.hset(key, mapping={model: table.state_version for model, table in self.tables.items()})
            else:
                pipe.hset(key, "_", 0)
            if self.advertise_url:
                pipe.hset(key, URL_FIELD, self.advertise_url)
            pipe.expire(key, int(REPLICA_TTL))
            pipe.zadd(self.keys.replicas, {self.replica_id: time.time()})
            pipe.zremrangebyscore(self.keys.replicas, "-inf", time.time() - 10 * REPLICA_TTL)
            await pipe.execute()

    def applied(self) -> dict[str, int]:
        return {model: table.state_version for model, table in self.tables.items()}
