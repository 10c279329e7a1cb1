"""Which routes each rollout step asks for, and which version a rollback returns to: pure decisions.

Route labels are what the gateway's metrics are labelled with, so the guardrails can tell the champion's
traffic from the challenger's in the same window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipelines.alias_log import AliasMove
from serving.gateway.routing import Routes

ROLLBACK_REQUEST_PREFIX = "rollback/"  # alias-log request ids of factory_rollback: rollback/<rollout id>
BAKE_ROLLBACK_SUFFIX = "/bake-rollback"  # factory_rollout's move back during the bake: rollout/<id>/bake-rollback


def is_rollback_request(request_id: str) -> bool:
    """Whether an alias-log move was a rollback (by factory_rollback, or by a rollout's bake)."""
    return request_id.startswith(ROLLBACK_REQUEST_PREFIX) or request_id.endswith(BAKE_ROLLBACK_SUFFIX)


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


def rollback_target(history: Sequence[AliasMove], requested: str | None, request_id: str) -> tuple[int | None, int]:
    """(champion being replaced or None, target) of the rollback request `request_id`, from the alias log.

    The default target is the previous champion. Two things make the default unsafe, and both are decided from
    the log: a retry of a request whose first attempt already moved the alias would now read `previous` = the
    version it rolled back from (so a retry returns what the first attempt chose), and a second default
    rollback right after one would restore the version just rolled back from (refused: name the target).
    """
    for move in history:
        change = move.change_of("champion")
        if move.request_id == request_id and change is not None and change.to_version is not None:
            return (int(change.from_version) if change.from_version else None), int(change.to_version)
    aliases = history[-1].aliases if history else {}
    champion = int(aliases["champion"]) if "champion" in aliases else None
    if requested:
        if not requested.isdigit() or int(requested) < 1:
            raise RolloutPlanError(f"target version {requested!r} is not a registry version number")
        return champion, int(requested)
    if "previous" not in aliases:
        raise RolloutPlanError("there is no previous champion to roll back to: name the target version")
    last = next((move for move in reversed(history) if move.change_of("champion") is not None), None)
    if last is not None and is_rollback_request(last.request_id):
        raise RolloutPlanError(
            f"the last champion move (alias log #{last.seq}, {last.reason!r}) was a rollback: rolling back to "
            f"`previous` again would restore v{aliases['previous']}, the version it replaced; name the target version"
        )
    return champion, int(aliases["previous"])
