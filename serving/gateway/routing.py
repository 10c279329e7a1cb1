"""Routing decisions of the serving gateway: pure data and functions, no I/O.

What a rollout asks for is a `Routes` value: weighted routes to Triton model versions (champion, canary,
percentage ramp), an optional shadow (mirror a share of requests to a challenger), and the active Triton pool
(blue-green: two pools, one field to switch). The store turns it into a `RouteTable` that also holds the
*allocation*: which of the 10,000 hash buckets each version owns.

Why an explicit allocation instead of hashing against the weights on every request: a request key hashes to a
bucket, and the bucket's owner serves it, so the same key reaches the same version for as long as the table is
unchanged (sticky). When weights change, `allocate` starts from the previous owners and moves only the buckets
that must move: a version that shrinks gives up buckets from its top, a version that grows takes free buckets
from the bottom. Moving a challenger from 5 % to 25 % therefore re-routes exactly 20 % of the keys (all from
the champion to the challenger) and keeps every key already on the challenger there, whatever the number of
routes. Plain weighted hashing (ranges in list order, or rendezvous hashing with more than two routes) moves
more keys than that.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BUCKETS = 10_000  # 0.01 % granularity: the smallest share a route can hold
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# (first bucket, end bucket exclusive, model version)
BucketRange = tuple[int, int, int]


class RoutingError(ValueError):
    """A routing request is invalid; the message names the field."""


def _percent_to_buckets(percent: float, field: str) -> int:
    buckets = round(percent * BUCKETS / 100)
    if abs(buckets - percent * BUCKETS / 100) > 1e-6:
        raise ValueError(f"{field} {percent} is finer than the 0.01 % routing granularity")
    return buckets


class Route(BaseModel):
    """A share of the traffic served by one Triton model version. `label` names the route in metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    percent: float = Field(ge=0, le=100)
    label: str = "primary"

    @field_validator("label")
    @classmethod
    def _check_label(cls, label: str) -> str:
        if not _LABEL.match(label):
            raise ValueError(f"label {label!r} must match {_LABEL.pattern}")
        return label

    @field_validator("percent")
    @classmethod
    def _check_granularity(cls, percent: float) -> float:
        _percent_to_buckets(percent, "percent")
        return percent

    @property
    def buckets(self) -> int:
        return _percent_to_buckets(self.percent, "percent")


class Shadow(BaseModel):
    """Mirror `share` of the requests to `version` (on `pool`, default the active pool), off the response path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    share: float = Field(default=1.0, gt=0, le=1)
    pool: str | None = None
    label: str = "shadow"

    @field_validator("pool")
    @classmethod
    def _check_pool(cls, pool: str | None) -> str | None:
        if pool is not None and not _POOL.match(pool):
            raise ValueError(f"pool {pool!r} must match {_POOL.pattern}")
        return pool

    @field_validator("label")
    @classmethod
    def _check_label(cls, label: str) -> str:
        if not _LABEL.match(label):
            raise ValueError(f"label {label!r} must match {_LABEL.pattern}")
        return label


class Routes(BaseModel):
    """The routing a rollout asks for: weighted routes that sum to 100 %, an optional shadow, the active pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: tuple[Route, ...] = Field(min_length=1)
    shadow: Shadow | None = None
    pool: str = "default"

    @field_validator("pool")
    @classmethod
    def _check_pool(cls, pool: str) -> str:
        if not _POOL.match(pool):
            raise ValueError(f"pool {pool!r} must match {_POOL.pattern}")
        return pool

    @model_validator(mode="after")
    def _check_routes(self) -> Routes:
        versions = [route.version for route in self.routes]
        repeated = sorted({version for version in versions if versions.count(version) > 1})
        if repeated:
            raise ValueError(f"versions {repeated} appear in more than one route")
        labels = [route.label for route in self.routes]
        repeated_labels = sorted({label for label in labels if labels.count(label) > 1})
        if repeated_labels:
            raise ValueError(f"route labels {repeated_labels} are used more than once")
        total = sum(route.buckets for route in self.routes)
        if total != BUCKETS:
            raise ValueError(f"route percents sum to {total / 100:g} %, expected 100 %")
        return self

    @property
    def weights(self) -> dict[int, int]:
        """Buckets per version (0..BUCKETS)."""
        return {route.version: route.buckets for route in self.routes}

    # ----- builders the rollout uses ----------------------------------------------------------------------------
    @classmethod
    def single(cls, version: int, *, label: str = "champion", pool: str = "default") -> Routes:
        """All traffic to one version."""
        return cls(routes=(Route(version=version, percent=100, label=label),), pool=pool)

    @classmethod
    def split(
        cls,
        champion: int,
        challenger: int,
        challenger_percent: float,
        *,
        pool: str = "default",
        challenger_label: str = "challenger",
    ) -> Routes:
        """Canary / percentage rollout: `challenger_percent` to the challenger, the rest to the champion."""
        return cls(
            routes=(
                Route(version=champion, percent=round(100 - challenger_percent, 2), label="champion"),
                Route(version=challenger, percent=challenger_percent, label=challenger_label),
            ),
            pool=pool,
        )

    def with_shadow(self, version: int, *, share: float = 1.0, pool: str | None = None) -> Routes:
        return self.model_copy(update={"shadow": Shadow(version=version, share=share, pool=pool)})

    def without_shadow(self) -> Routes:
        return self.model_copy(update={"shadow": None})

    def switch_pool(self, pool: str) -> Routes:
        """Blue-green: the same routes, served by another pool (one atomic `set_routes`)."""
        return Routes(routes=self.routes, shadow=self.shadow, pool=pool)


class RouteTable(BaseModel):
    """What the store holds per model: the requested routes, the bucket allocation and the state version.

    `state_version` counts changes (1 for the first table); `set_routes` takes the one the caller read, so two
    writers can never both apply a change computed from the same state.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    state_version: int = Field(ge=1)
    routes: Routes
    allocation: tuple[BucketRange, ...]
    updated_at: str
    reason: str = ""

    @model_validator(mode="after")
    def _check_allocation(self) -> RouteTable:
        check_allocation(self.allocation, self.routes.weights)
        return self

    def share_of(self, version: int) -> float:
        """Fraction of buckets `version` owns."""
        return sum(end - start for start, end, owner in self.allocation if owner == version) / BUCKETS


def check_model_name(model: str) -> str:
    if not _MODEL.match(model):
        raise RoutingError(f"model name {model!r} is not a valid Triton model name")
    return model


def check_allocation(allocation: Sequence[BucketRange], weights: Mapping[int, int]) -> None:
    """Ranges are sorted, contiguous, cover every bucket, and give each version exactly its weight."""
    position = 0
    owned: dict[int, int] = {}
    for start, end, version in allocation:
        if start != position or end <= start:
            raise ValueError(f"allocation range {[start, end]} does not continue at bucket {position}")
        owned[version] = owned.get(version, 0) + end - start
        position = end
    if position != BUCKETS:
        raise ValueError(f"allocation ends at bucket {position}, expected {BUCKETS}")
    expected = {version: buckets for version, buckets in weights.items() if buckets}
    if owned != expected:
        raise ValueError(f"allocation gives {owned}, routes ask for {expected}")


def allocate(previous: Sequence[BucketRange] | None, weights: Mapping[int, int]) -> tuple[BucketRange, ...]:
    """Bucket ranges for `weights` ({version: buckets}, summing to BUCKETS), moving as few buckets as possible.

    From `previous`: versions no longer routed free all their buckets; a version above its new weight frees
    buckets from its highest ranges down; a version below takes free buckets, lowest first, in ascending
    version order (deterministic). A bucket changes owner only if its owner had to give it up.
    """
    if sum(weights.values()) != BUCKETS or any(buckets < 0 for buckets in weights.values()):
        raise ValueError(f"weights {dict(weights)} must be non-negative and sum to {BUCKETS}")
    owner = [0] * BUCKETS  # 0 = free
    if previous:
        for start, end, version in previous:
            if weights.get(version, 0):
                owner[start:end] = [version] * (end - start)
    held: dict[int, int] = {}
    for version in owner:
        if version:
            held[version] = held.get(version, 0) + 1
    for version, buckets in weights.items():
        excess = held.get(version, 0) - buckets
        for bucket in range(BUCKETS - 1, -1, -1):
            if excess <= 0:
                break
            if owner[bucket] == version:
                owner[bucket] = 0
                excess -= 1
    free = iter([bucket for bucket in range(BUCKETS) if owner[bucket] == 0])
    for version in sorted(weights):
        for _ in range(weights[version] - held.get(version, 0)):
            owner[next(free)] = version
    return _ranges(owner)


def _ranges(owner: list[int]) -> tuple[BucketRange, ...]:
    ranges: list[BucketRange] = []
    start = 0
    for bucket in range(1, BUCKETS + 1):
        if bucket == BUCKETS or owner[bucket] != owner[start]:
            ranges.append((start, bucket, owner[start]))
            start = bucket
    return tuple(ranges)


def plan_table(
    model: str, current: RouteTable | None, routes: Routes, *, reason: str = "", now: datetime | None = None
) -> RouteTable:
    """The table that replaces `current` (None: the model has no routes yet) with `routes`."""
    check_model_name(model)
    if current is not None and current.model != model:
        raise RoutingError(f"current table belongs to {current.model!r}, not {model!r}")
    return RouteTable(
        model=model,
        state_version=(current.state_version if current else 0) + 1,
        routes=routes,
        allocation=allocate(current.allocation if current else None, routes.weights),
        updated_at=(now or datetime.now(UTC)).isoformat(),
        reason=reason,
    )


def bucket_of(model: str, key: str) -> int:
    """The bucket a request key falls in for `model` (salted by model: a key's buckets are independent
    across models, so one user is not the canary of every model at once)."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % BUCKETS


def moved_share(before: RouteTable | Sequence[BucketRange], after: RouteTable | Sequence[BucketRange]) -> float:
    """Fraction of buckets whose version differs between two allocations (what a change re-routes)."""
    owners = [_owners(table.allocation if isinstance(table, RouteTable) else table) for table in (before, after)]
    return sum(old != new for old, new in zip(*owners, strict=True)) / BUCKETS


def _owners(allocation: Sequence[BucketRange]) -> list[int]:
    owner = [0] * BUCKETS
    for start, end, version in allocation:
        owner[start:end] = [version] * (end - start)
    return owner


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: a version on a pool, under a route label (for metrics and records)."""

    version: int
    label: str
    pool: str


class CompiledRoutes:
    """A `RouteTable` prepared for the request path: one hash and one binary search per request."""

    __slots__ = ("_shadow_buckets", "_starts", "_targets", "model", "shadow", "state_version", "table")

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        self.model = table.model
        self.state_version = table.state_version
        routes = table.routes
        labels = {route.version: route.label for route in routes.routes}
        self._starts = [start for start, _, _ in table.allocation]
        self._targets = [Target(version, labels[version], routes.pool) for _, _, version in table.allocation]
        shadow = routes.shadow
        self.shadow = None if shadow is None else Target(shadow.version, shadow.label, shadow.pool or routes.pool)
        self._shadow_buckets = 0 if shadow is None else round(shadow.share * BUCKETS)

    @property
    def pools(self) -> set[str]:
        pools = {target.pool for target in self._targets}
        return pools | ({self.shadow.pool} if self.shadow else set())

    def choose(self, key: str) -> Target:
        """The target serving a request with routing key `key` (sticky while the table is unchanged)."""
        return self._targets[bisect_right(self._starts, bucket_of(self.model, key)) - 1]

    def shadow_for(self, primary: Target, request_id: str) -> Target | None:
        """The shadow target for this request, or None (no shadow, not in the mirrored share, or the request
        already went to the shadow version on the same pool)."""
        shadow = self.shadow
        if shadow is None or (shadow.version == primary.version and shadow.pool == primary.pool):
            return None
        if self._shadow_buckets < BUCKETS and bucket_of(f"{self.model}\0shadow", request_id) >= self._shadow_buckets:
            return None
        return shadow
