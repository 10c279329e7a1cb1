"""Gateway routing state on the real Redis (127.0.0.1:6379, running here and in CI): compare-and-set, history,
replica watchers and their acknowledgements. Each test gets its own key prefix and removes its keys."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from serving.gateway.routing import Routes
from serving.gateway.state import RouteConflict, RouteStateError, RouteStore, RouteWatcher, redacted

REDIS_URL = "redis://127.0.0.1:6379/0"
MODEL = "flights_delay"


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"these tests need the Redis server at {REDIS_URL} (see ../shared/stack-facts.md): {error}")
    name = f"factory-test:{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def store(prefix: str) -> Iterator[RouteStore]:
    with RouteStore(REDIS_URL, prefix) as route_store:
        yield route_store


def test_a_model_without_routes_reads_as_none(store: RouteStore) -> None:
    assert store.get_routes(MODEL) is None
    assert store.models() == []


def test_routes_are_created_then_changed_with_the_version_read(store: RouteStore) -> None:
    first = store.set_routes(MODEL, Routes.single(1), expected_version=0, reason="first deploy")
    second = store.set_routes(MODEL, Routes.split(1, 2, 5), expected_version=1, reason="canary")

    assert (first.state_version, second.state_version) == (1, 2)
    assert store.get_routes(MODEL) == second
    assert store.models() == [MODEL]
    assert [table.reason for table in store.history(MODEL)] == ["canary", "first deploy"]


def test_a_stale_expected_version_is_refused_and_changes_nothing(store: RouteStore) -> None:
    store.set_routes(MODEL, Routes.single(1), expected_version=0)
    current = store.set_routes(MODEL, Routes.split(1, 2, 5), expected_version=1)

    with pytest.raises(RouteConflict, match="at state_version 2, not 1") as caught:
        store.set_routes(MODEL, Routes.single(2), expected_version=1)
    with pytest.raises(RouteConflict):
        store.set_routes(MODEL, Routes.single(2), expected_version=0)

    assert caught.value.current == 2
    assert store.get_routes(MODEL) == current


def test_concurrent_writers_from_the_same_state_produce_exactly_one_change(prefix: str, store: RouteStore) -> None:
    store.set_routes(MODEL, Routes.single(1), expected_version=0)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def writer(percent: int) -> None:
        with RouteStore(REDIS_URL, prefix) as own:
            barrier.wait()
            try:
                own.set_routes(MODEL, Routes.split(1, 2, percent), expected_version=1)
                outcomes.append("applied")
            except RouteConflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(5 * (n + 1),)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["applied"] + ["conflict"] * 7
    assert store.get_routes(MODEL).state_version == 2
    assert len(store.history(MODEL)) == 2


def test_an_allocation_is_computed_from_the_stored_table(store: RouteStore) -> None:
    canary = store.set_routes(MODEL, Routes.split(1, 2, 5), expected_version=0)
    ramp = store.set_routes(MODEL, Routes.split(1, 2, 25), expected_version=canary.state_version)

    # The challenger keeps the buckets it had and gains the champion's top ones.
    assert canary.allocation == ((0, 9_500, 1), (9_500, 10_000, 2))
    assert ramp.allocation == ((0, 7_500, 1), (7_500, 10_000, 2))


def test_delete_is_compare_and_set_too(store: RouteStore) -> None:
    store.set_routes(MODEL, Routes.single(1), expected_version=0)

    with pytest.raises(RouteConflict):
        store.delete_routes(MODEL, expected_version=2)
    store.delete_routes(MODEL, expected_version=1)

    assert store.get_routes(MODEL) is None
    assert store.models() == []


def test_an_unreadable_table_is_named(prefix: str, store: RouteStore) -> None:
    redis.Redis.from_url(REDIS_URL).hset(f"{prefix}:routes:{MODEL}", mapping={"state_version": 1, "table": "{}"})

    with pytest.raises(RouteStateError, match=f"{prefix}:routes:{MODEL} holds an unreadable route table"):
        store.get_routes(MODEL)


def test_an_unreachable_redis_is_a_clear_error() -> None:
    with (
        RouteStore("redis://127.0.0.1:1/0", "factory-test:none") as unreachable,
        pytest.raises(RouteStateError, match=r"Redis at redis://127\.0\.0\.1:1/0 failed"),
    ):
        unreachable.get_routes(MODEL)


def test_replicas_pick_up_changes_and_report_what_they_apply(prefix: str, store: RouteStore) -> None:
    async def scenario() -> None:
        changes: list[tuple[str, int | None]] = []
        watchers = [
            RouteWatcher(REDIS_URL, prefix, f"replica-{n}", poll_interval=0.05,
                         on_change=lambda model, compiled: changes.append(
                             (model, None if compiled is None else compiled.state_version)))
            for n in range(2)
        ]  # fmt: skip
        for watcher in watchers:
            await watcher.start()
        try:
            assert all(watcher.loaded and watcher.tables == {} for watcher in watchers)
            table = await asyncio.to_thread(store.set_routes, MODEL, Routes.split(1, 2, 10), 0)
            applied = await asyncio.to_thread(store.wait_until_applied, MODEL, table.state_version, min_replicas=2)
            assert applied == {"replica-0": 1, "replica-1": 1}
            for watcher in watchers:
                assert watcher.tables[MODEL].table == table
            unchanged = watchers[0].tables[MODEL]
            assert await watchers[0].refresh() is False
            assert watchers[0].tables[MODEL] is unchanged  # no reload without a change
            await asyncio.to_thread(store.delete_routes, MODEL, 1)
            await asyncio.sleep(0.3)
            assert all(MODEL not in watcher.tables for watcher in watchers)
            assert changes.count((MODEL, 1)) == 2 and changes.count((MODEL, None)) == 2
        finally:
            for watcher in watchers:
                await watcher.stop()
        # A stopped replica no longer counts.
        assert await asyncio.to_thread(store.applied_versions, MODEL) == {}

    asyncio.run(scenario())


def test_waiting_for_replicas_that_never_apply_times_out_with_what_they_apply(store: RouteStore) -> None:
    with pytest.raises(RouteStateError, match="nothing \\(no live replica\\)"):
        store.wait_until_applied(MODEL, 1, timeout=0.2)


def test_a_watcher_without_redis_starts_and_says_why() -> None:
    async def scenario() -> None:
        watcher = RouteWatcher("redis://127.0.0.1:1/0", "factory-test:none", "replica", poll_interval=0.05)
        await watcher.start()
        try:
            assert not watcher.loaded
            assert watcher.error is not None and "redis://127.0.0.1:1/0" in watcher.error
        finally:
            await watcher.stop()

    asyncio.run(scenario())


def test_a_watcher_keeps_the_last_routes_while_redis_is_unreachable(prefix: str, store: RouteStore) -> None:
    store.set_routes(MODEL, Routes.single(1), expected_version=0)

    async def scenario() -> None:
        watcher = RouteWatcher(REDIS_URL, prefix, "replica", poll_interval=0.05)
        await watcher.start()
        try:
            known = watcher.tables[MODEL]
            # Point the watcher at a dead server, as if Redis went away.
            await watcher._redis.aclose()
            watcher._redis = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
            assert await watcher.refresh() is False
            assert watcher.error is not None and watcher.tables[MODEL] is known
        finally:
            await watcher.stop()

    asyncio.run(scenario())


def test_a_redis_password_never_reaches_messages() -> None:
    assert redacted("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redacted("redis://user:s3cret@cache/0") == "redis://user:***@cache/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with (
        RouteStore("redis://:s3cret@127.0.0.1:1/0", "factory-test:none") as store,
        pytest.raises(RouteStateError) as caught,
    ):
        store.get_routes(MODEL)
    assert "s3cret" not in str(caught.value)
