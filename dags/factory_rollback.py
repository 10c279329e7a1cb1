"""Roll a model back in seconds: one trigger restores Triton, routes and aliases to a known-good version.

Params: the model, the target version (empty: the `previous` champion, the one the last promotion replaced)
and why. In the zero-downtime order: the target is made ready on every Triton host first (usually it still is:
a replaced champion stays loaded through the bake), then every gateway replica routes 100 % to it, then the
`champion` alias moves to it (the replaced version becomes `previous`), with the reason in the alias log. The
record goes to s3://factory-data/rollouts/<model>/<run>/ and onto both versions as MLflow tags. A retry of the
task restores what its first attempt chose (found in the alias log by the run's request id), and a second
rollback to `previous` right after a rollback is refused (it would restore the version just rolled back from):
name the target version instead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=2),  # a rollback is urgent: retry fast
    "on_failure_callback": [WebhookNotifier(), EmailNotifier()],
}


@dag(
    dag_id="factory_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["factory", "serving", "rollback"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={
        "model_name": Param("flights-hgb", type="string", minLength=1, description="Registered model name"),
        "target_version": Param(
            "", type="string", pattern=r"^([1-9][0-9]*)?$", description="Version to restore (empty: @previous)"
        ),
        "reason": Param("", type="string", minLength=3, description="Why (recorded in the alias log)"),
        "policy": Param("pipelines/configs/policies/rollout.yaml", type="string", description="Parity settings"),
    },
)
def factory_rollback():
    @task
    def roll_back(params: dict[str, Any] | None = None, ti=None) -> dict[str, Any]:
        import time
        from datetime import UTC, datetime

        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.gateway.hooks import GatewayHook
        from factory_providers.mlflow.aliases import AliasRegistry
        from factory_providers.mlflow.gate import set_version_tags
        from factory_providers.mlflow.hooks import MlflowHook
        from factory_providers.rollout.operations import Rollout, StepRecorder, deploy, route_back, serving_everywhere
        from factory_providers.triton.fleet import FleetDeployError

        from pipelines.alias_log import AliasMoveError
        from pipelines.assembly import DATA_BUCKET, run_key
        from pipelines.rollout.plan import ROLLBACK_REQUEST_PREFIX, RolloutPlanError, rollback_target
        from pipelines.rollout.policy import RolloutPolicyError, load_rollout_policy

        params = params or {}
        model, reason = params["model_name"], params["reason"]
        started, clock = datetime.now(UTC), time.monotonic()
        rollout_id = f"rollback-{run_key(ti.run_id)}"
        request_id = f"{ROLLBACK_REQUEST_PREFIX}{rollout_id}"  # a retry finds its first attempt's move by it
        gateway = GatewayHook()
        with AliasRegistry.connect() as registry, gateway.route_store() as store:
            try:
                policy = load_rollout_policy(params["policy"])
                champion, target = rollback_target(
                    registry.alias_history(model), params["target_version"] or None, request_id
                )
            except (RolloutPlanError, RolloutPolicyError) as error:
                raise AirflowFailException(str(error)) from None
            current = store.get_routes(model)
            plan = Rollout(
                model=model,
                rollout_id=rollout_id,
                champion=champion,
                challenger=target,
                pool=current.routes.pool if current else "default",
                target_pool=current.routes.pool if current else "default",
                policy_path=params["policy"],
                policy=policy,
                actor=f"airflow:{ti.dag_id}/{ti.run_id}",
            )
            timings = {}
            if not serving_everywhere(model, target):
                live = sorted({target} | ({champion} if champion else set()))
                try:
                    deploy(model, live, [target], policy)
                except FleetDeployError as error:  # the fleet still serves what it served: nothing moved
                    raise AirflowFailException(f"rollback to v{target} refused: {error}") from None
            timings["triton_ready_s"] = round(time.monotonic() - clock, 3)
            table = route_back(gateway, store, model, target, plan.pool, f"rollback {plan.rollout_id}: {reason}")
            timings["routes_applied_s"] = round(time.monotonic() - clock, 3)
            try:
                move = registry.move_alias(
                    model,
                    "champion",
                    str(target),
                    expected=str(champion) if champion else None,
                    actor=plan.actor,
                    reason=f"rollback: {reason}",
                    request_id=request_id,
                )
            except AliasMoveError as error:  # e.g. the target version is not registered
                raise AirflowFailException(f"rollback to v{target}: {error}") from None
            timings["aliases_moved_s"] = round(time.monotonic() - clock, 3)
        recorder = StepRecorder(plan, DATA_BUCKET)
        detail = f"v{target} serves 100 % and is champion (alias log #{move.seq}), replacing v{champion}: {reason}"
        recorder.write(0, "rollback", "rolled_back", started, table=table, detail=detail)

        with MlflowHook().tracking() as client:
            set_version_tags(client, model, str(target), {"rollback.restored_by": plan.rollout_id})
            if champion and champion != target:
                replaced = {"rollback.replaced_by": plan.rollout_id, "rollback.reason": reason}
                set_version_tags(client, model, str(champion), replaced)
        record = recorder.uri(0, "rollback")
        return {"model": model, "from": champion, "to": target, "timings": timings, "record": record}

    roll_back()


factory_rollback()
