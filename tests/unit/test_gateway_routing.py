"""Gateway routing (pure): route validation, bucket allocation with minimal movement, sticky choice, shadow,
blue-green pools."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from pydantic import ValidationError

from serving.gateway.routing import (
    BUCKETS,
    CompiledRoutes,
    Route,
    Routes,
    RouteTable,
    RoutingError,
    Target,
    allocate,
    bucket_of,
    check_allocation,
    moved_share,
    plan_table,
)

MODEL = "flights_delay"
KEYS = [f"customer-{number}" for number in range(20_000)]


def table_for(routes: Routes, current: RouteTable | None = None) -> RouteTable:
    return plan_table(MODEL, current, routes)


def versions_of(table: RouteTable, keys: list[str] = KEYS) -> list[int]:
    compiled = CompiledRoutes(table)
    return [compiled.choose(key).version for key in keys]


# ----- what a rollout may ask for -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("routes", "problem"),
    [
        ([{"version": 1, "percent": 60, "label": "a"}, {"version": 2, "percent": 30, "label": "b"}], "sum to 90 %"),
        ([{"version": 1, "percent": 50, "label": "a"}, {"version": 1, "percent": 50, "label": "b"}], "versions [1]"),
        ([{"version": 1, "percent": 50}, {"version": 2, "percent": 50}], "labels ['primary']"),
        ([{"version": 1, "percent": 99.995, "label": "a"}, {"version": 2, "percent": 0.005, "label": "b"}], "0.01 %"),
        ([{"version": 1, "percent": -5}], "greater than or equal to 0"),
        ([{"version": 0, "percent": 100}], "greater than or equal to 1"),
        ([{"version": 1, "percent": 100, "label": "Champion!"}], "label 'Champion!'"),
        ([], "at least 1 item"),
    ],
)
def test_invalid_routes_are_refused_naming_the_problem(routes: list[dict], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Routes.model_validate({"routes": routes})


def test_invalid_pool_and_shadow_share_are_refused() -> None:
    with pytest.raises(ValidationError, match="pool 'blue green'"):
        Routes.single(1, pool="blue green")
    with pytest.raises(ValidationError, match="greater than 0"):
        Routes.single(1).with_shadow(2, share=0)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        Routes.single(1).with_shadow(2, share=1.5)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="weight"):
        Routes.model_validate({"routes": [{"version": 1, "weight": 100}]})


def test_builders_give_the_expected_routes() -> None:
    canary = Routes.split(3, 4, 5, pool="blue")

    assert [(r.version, r.percent, r.label) for r in canary.routes] == [(3, 95, "champion"), (4, 5, "challenger")]
    assert canary.weights == {3: 9_500, 4: 500}
    assert canary.pool == "blue"
    shadowed = Routes.single(3).with_shadow(4, share=0.5)
    assert shadowed.shadow is not None and (shadowed.shadow.version, shadowed.shadow.share) == (4, 0.5)
    assert shadowed.without_shadow().shadow is None


# ----- allocation ------------------------------------------------------------------------------------------------
def test_a_first_allocation_covers_every_bucket_with_the_asked_shares() -> None:
    table = table_for(Routes.split(1, 2, 25))

    assert table.state_version == 1
    assert table.allocation == ((0, 7_500, 1), (7_500, BUCKETS, 2))
    assert (table.share_of(1), table.share_of(2)) == (0.75, 0.25)


def test_zero_percent_routes_own_no_bucket() -> None:
    routes = Routes(routes=(Route(version=1, percent=100, label="champion"), Route(version=2, percent=0, label="old")))

    table = table_for(routes)

    assert table.allocation == ((0, BUCKETS, 1),)
    assert set(versions_of(table, KEYS[:2_000])) == {1}


def test_moving_a_challenger_from_5_to_25_percent_moves_only_20_percent_of_keys() -> None:
    canary = table_for(Routes.split(1, 2, 5))
    ramp = table_for(Routes.split(1, 2, 25), canary)

    assert moved_share(canary, ramp) == pytest.approx(0.20)
    before, after = versions_of(canary), versions_of(ramp)
    moves = Counter((old, new) for old, new in zip(before, after, strict=True) if old != new)
    assert set(moves) == {(1, 2)}  # only champion -> challenger
    assert all(new == 2 for old, new in zip(before, after, strict=True) if old == 2)  # challenger keys stay
    assert moves[(1, 2)] / len(KEYS) == pytest.approx(0.20, abs=0.01)


def test_a_whole_ramp_moves_exactly_the_added_share_at_every_step() -> None:
    table = table_for(Routes.single(1))
    previous_percent = 0.0
    for percent in (5, 25, 50, 100):
        routes = Routes.split(1, 2, percent) if percent < 100 else Routes.single(2)
        new = table_for(routes, table)
        assert moved_share(table, new) == pytest.approx((percent - previous_percent) / 100)
        table, previous_percent = new, percent
    assert table.allocation == ((0, BUCKETS, 2),)
    assert table.state_version == 5


def test_with_three_routes_a_change_between_two_leaves_the_third_untouched() -> None:
    three = Routes(
        routes=(Route(version=1, percent=50, label="a"), Route(version=2, percent=30, label="b"),
                Route(version=3, percent=20, label="c"))
    )  # fmt: skip
    changed = Routes(
        routes=(Route(version=1, percent=40, label="a"), Route(version=2, percent=30, label="b"),
                Route(version=3, percent=30, label="c"))
    )  # fmt: skip
    before = table_for(three)
    after = table_for(changed, before)

    assert moved_share(before, after) == pytest.approx(0.10)
    old, new = versions_of(before), versions_of(after)
    assert [n for o, n in zip(old, new, strict=True) if o == 2] == [2] * old.count(2)


def test_random_weight_changes_always_move_the_minimum() -> None:
    """Property: over many random transitions (versions appearing and disappearing), the buckets that change
    owner are exactly the growth the new weights require, and the allocation stays valid."""
    rng = random.Random(7)
    previous = None
    previous_weights: dict[int, int] = {}
    for _ in range(300):
        versions = rng.sample(range(1, 8), rng.randint(1, 5))
        cuts = sorted(rng.randint(0, BUCKETS) for _ in range(len(versions) - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, BUCKETS], strict=True)]
        weights = dict(zip(versions, sizes, strict=True))
        allocation = allocate(previous, weights)
        check_allocation(allocation, weights)
        if previous is not None:
            needed = sum(max(0, weights[v] - previous_weights.get(v, 0)) for v in weights) / BUCKETS
            assert moved_share(previous, allocation) == pytest.approx(needed)
        previous, previous_weights = allocation, weights


def test_unchanged_weights_keep_every_key_even_when_labels_pool_or_shadow_change() -> None:
    first = table_for(Routes.split(1, 2, 10))
    relabelled = Routes.split(1, 2, 10, challenger_label="canary").with_shadow(3).switch_pool("green")

    second = table_for(relabelled, first)

    assert second.allocation == first.allocation
    assert versions_of(first) == versions_of(second)


def test_allocate_refuses_weights_that_do_not_cover_every_bucket() -> None:
    with pytest.raises(ValueError, match="sum to 10000"):
        allocate(None, {1: 5_000})


def test_a_tampered_allocation_is_refused() -> None:
    table = table_for(Routes.split(1, 2, 25))
    data = table.model_dump(mode="json")

    data["allocation"] = [[0, 5_000, 1], [5_000, BUCKETS, 2]]
    with pytest.raises(ValidationError, match="allocation gives"):
        RouteTable.model_validate(data)
    data["allocation"] = [[0, 7_500, 1], [7_600, BUCKETS, 2]]
    with pytest.raises(ValidationError, match="does not continue at bucket 7500"):
        RouteTable.model_validate(data)


def test_a_table_survives_a_json_round_trip() -> None:
    table = table_for(Routes.split(1, 2, 25).with_shadow(2, share=0.5), table_for(Routes.single(1)))

    assert RouteTable.model_validate_json(table.model_dump_json()) == table


def test_plan_table_checks_the_model() -> None:
    table = table_for(Routes.single(1))

    with pytest.raises(RoutingError, match="belongs to 'flights_delay'"):
        plan_table("other_model", table, Routes.single(2))
    with pytest.raises(RoutingError, match="not a valid Triton model name"):
        plan_table("../etc", None, Routes.single(1))


# ----- the request path ------------------------------------------------------------------------------------------
def test_the_same_key_always_reaches_the_same_version() -> None:
    compiled = CompiledRoutes(table_for(Routes.split(1, 2, 50)))

    for key in KEYS[:500]:
        assert len({compiled.choose(key) for _ in range(3)}) == 1


def test_keys_split_in_the_asked_proportions() -> None:
    shares = Counter(versions_of(table_for(Routes.split(1, 2, 25))))

    assert shares[2] / len(KEYS) == pytest.approx(0.25, abs=0.015)


def test_buckets_are_independent_across_models() -> None:
    same = sum(bucket_of("model_a", key) // 100 == bucket_of("model_b", key) // 100 for key in KEYS)

    assert same / len(KEYS) < 0.03  # ~1 % expected by chance (100 coarse buckets)


def test_targets_carry_label_and_active_pool() -> None:
    compiled = CompiledRoutes(table_for(Routes.split(1, 2, 50, pool="blue")))

    targets = {compiled.choose(key) for key in KEYS[:200]}

    assert targets == {Target(1, "champion", "blue"), Target(2, "challenger", "blue")}


def test_blue_green_switch_moves_every_request_to_the_other_pool_and_keeps_versions() -> None:
    blue = table_for(Routes.split(1, 2, 30, pool="blue"))
    green = table_for(blue.routes.switch_pool("green"), blue)
    before, after = CompiledRoutes(blue), CompiledRoutes(green)

    for key in KEYS[:1_000]:
        old, new = before.choose(key), after.choose(key)
        assert (old.pool, new.pool) == ("blue", "green")
        assert old.version == new.version
    assert moved_share(blue, green) == 0


def test_shadow_mirrors_the_asked_share_deterministically() -> None:
    compiled = CompiledRoutes(table_for(Routes.single(1).with_shadow(2, share=0.3)))
    primary = Target(1, "champion", "default")

    mirrored = [compiled.shadow_for(primary, f"request-{n}") for n in range(10_000)]

    assert sum(shadow is not None for shadow in mirrored) / 10_000 == pytest.approx(0.3, abs=0.02)
    assert {shadow for shadow in mirrored if shadow is not None} == {Target(2, "shadow", "default")}
    assert compiled.shadow_for(primary, "request-1") == mirrored[1]


def test_full_shadow_mirrors_every_request_except_those_already_on_the_shadow_version() -> None:
    compiled = CompiledRoutes(table_for(Routes.split(1, 2, 10).with_shadow(2)))

    for key in KEYS[:500]:
        primary = compiled.choose(key)
        shadow = compiled.shadow_for(primary, key)
        assert (shadow is None) == (primary.version == 2)


def test_shadow_on_another_pool_mirrors_even_the_same_version() -> None:
    """Blue-green verification: mirror live traffic into the green pool before switching to it."""
    compiled = CompiledRoutes(table_for(Routes.single(1, pool="blue").with_shadow(1, pool="green")))

    shadow = compiled.shadow_for(compiled.choose("k"), "request")

    assert shadow == Target(1, "shadow", "green")
    assert compiled.pools == {"blue", "green"}


def test_no_shadow_without_one_in_the_routes() -> None:
    compiled = CompiledRoutes(table_for(Routes.single(1)))

    assert compiled.shadow_for(compiled.choose("k"), "request") is None
