"""Which routes each rollout step asks for, and which version a rollback returns to: pure decisions.

Route labels are what the gateway's metrics are labelled with, so the guardrails can tell the champion's
traffic from the challenger's in the same window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from serving.gateway.routing import Routes


class RolloutPlanError(ValueError):
    """The rollout or rollback cannot start as asked; the message says what is missing or inconsistent."""


def champion_routes(champion: int, pool: str) -> Routes:
    return Routes.single(champion, label="champion", pool=pool)


def shadow_routes(champion: int, challenger: int, pool: str, share: float, shadow_pool: str | None = None) -> Routes:
    """All answers from the champion; `share` of the requests mirrored to the challenger, off the response path
    (on `shadow_pool`: the idle pool of a blue-green pair, where the challenger waits for the switch)."""
    return champion_routes(champion, pool).with_shadow(challenger, share=share, pool=shadow_pool)


def idle_pool(pools: Sequence[str], active: str) -> str:
    """The other pool of a blue-green pair: exactly two pools, one of them active."""
    if len(pools) != 2 or active not in pools:
        raise RolloutPlanError(
            f"blue-green needs exactly two Triton pools, one of them active ({active!r}); the fleet has {sorted(pools)}"
        )
    return next(pool for pool in pools if pool != active)


def split_routes(champion: int, challenger: int, percent: float, pool: str) -> Routes:
    return Routes.split(champion, challenger, percent, pool=pool)


def rollout_versions(aliases: Mapping[str, str], requested: str) -> tuple[int | None, int]:
    """(champion or None, challenger) for a rollout of `requested` ("@challenger" or a version number)."""
    if requested.startswith("@"):
        alias = requested[1:]
        if alias not in aliases:
            raise RolloutPlanError(f"no version holds @{alias}: nothing to roll out (the gate promotes to @challenger)")
        requested = aliases[alias]
    if not requested.isdigit() or int(requested) < 1:
        raise RolloutPlanError(f"version {requested!r} is not a registry version number or @alias")
    challenger = int(requested)
    champion = int(aliases["champion"]) if "champion" in aliases else None
    if champion == challenger:
        raise RolloutPlanError(f"version {challenger} is already the champion: nothing to roll out")
    return champion, challenger


def rollback_target(aliases: Mapping[str, str], requested: str | None) -> tuple[int | None, int]:
    """(current champion or None, target) of a rollback; the default target is the previous champion."""
    champion = int(aliases["champion"]) if "champion" in aliases else None
    if requested:
        if not requested.isdigit() or int(requested) < 1:
            raise RolloutPlanError(f"target version {requested!r} is not a registry version number")
        return champion, int(requested)
    if "previous" not in aliases:
        raise RolloutPlanError("there is no previous champion to roll back to: name the target version")
    return champion, int(aliases["previous"])
