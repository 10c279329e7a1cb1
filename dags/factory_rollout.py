"""Roll a gated challenger out to production: deploy -> shadow -> canary -> ramp -> champion -> bake -> unload.

`plan_rollout` reads the registry (alias log): the champion serving now and the version to roll out (default
`@challenger`, the gate's output). `deploy_challenger` loads it next to the champion on every Triton host of the
fleet, all or nothing, with a parity check against the offline ONNX predictions. Then each step holds its
routes at the gateway for a window and judges the guardrails of the rollout policy on what the gateway measured
(error rate, p99 latency and prediction distribution against the champion, shadow disagreement): `shadow`
mirrors traffic to the challenger without answering with it, `canary` and `ramp` send it a growing share of
clients (sticky by request key). A breach, too little evidence, or any failure inside a step routes every
request back to the champion before the task fails. `promote` sends 100 % to the challenger and moves the
`champion` alias (the old champion becomes `previous`); `bake` watches it with the old champion still loaded
(an instant rollback), and `unload_previous` removes the old version from Triton. Every step writes a record to
s3://factory-data/rollouts/<model>/<rollout id>/; `record_rollout` writes the outcome and tags the version.

A first rollout (no champion yet) has nothing to compare with: it deploys and promotes; its traffic steps and
the bake are recorded as skipped.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, chain, dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

DEFAULT_ARGS = {
    "owner": "ml-platform",
    # Retries cover failures before anything moved (S3, registry, Redis hiccups). A traffic step that fails
    # routes back to the champion and raises AirflowFailException: a rolled-back rollout is over, never resumed.
    "retries": 1,
    "retry_delay": timedelta(seconds=10),
    "on_failure_callback": [WebhookNotifier(), EmailNotifier()],
}


def _context(rollout: dict[str, Any]):  # -> (Rollout, RolloutPolicy, GatewayHook, StepRecorder)
    from factory_providers.gateway.hooks import GatewayHook
    from factory_providers.rollout.operations import Rollout, StepRecorder

    from pipelines.assembly import DATA_BUCKET

    plan = Rollout.model_validate(rollout)
    return plan, plan.policy, GatewayHook(), StepRecorder(plan, DATA_BUCKET)


def _guarded_step(rollout: dict[str, Any], seq: int, step: str, run) -> dict[str, Any]:
    """Run one traffic step; on a breach or any failure, route everything back to the champion, record, fail.

    After `promote` (the bake) the champion alias moved too: it is moved back with the routes.
    """
    from datetime import UTC, datetime

    from airflow.sdk.exceptions import AirflowFailException

    plan, policy, gateway, recorder = _context(rollout)
    started = datetime.now(UTC)
    if plan.champion is None or (plan.blue_green and step in ("canary", "ramp")):
        why = "first rollout: no champion to compare with" if plan.champion is None else "blue-green: one switch"
        recorder.write(seq, step, "skipped", started, detail=why)
        return {"step": step, "action": "skipped"}
    with gateway.route_store() as store:
        try:
            table, verdict = run(plan, policy, gateway, store)
        except Exception as error:
            table = _roll_back(plan, gateway, store, step, f"{step} failed: {error}")
            recorder.write(seq, step, "rolled_back", started, table=table, detail=f"step failed: {error}")
            # Final, not retried: after a rollback the rollout is over (a retry would resume it half-way).
            raise AirflowFailException(f"rolled back to v{plan.champion}: {step} failed: {error}") from error
        if not verdict.passed:
            table = _roll_back(plan, gateway, store, step, verdict.summary)
            recorder.write(seq, step, "rolled_back", started, table=table, verdict=verdict, detail=verdict.summary)
            raise AirflowFailException(f"rolled back to v{plan.champion}: {verdict.summary}")
    recorder.write(seq, step, "continued", started, table=table, verdict=verdict, detail=verdict.summary)
    result = {"step": step, "action": "continued", "summary": verdict.summary}
    if verdict.shadow_scores:  # for canary and ramp
        result["shadow_scores"] = json.loads(verdict.model_dump_json())["shadow_scores"]  # +Inf as "Infinity"
    return result


def _roll_back(plan, gateway, store, step: str, reason: str):  # -> RouteTable
    from factory_providers.mlflow.aliases import AliasRegistry
    from factory_providers.rollout.operations import route_back

    from pipelines.rollout.plan import BAKE_ROLLBACK_SUFFIX

    table = route_back(gateway, store, plan.model, plan.champion, plan.pool, f"rollout {plan.rollout_id}: {reason}")
    if step == "bake":  # promoted already: the alias follows the routes back
        with AliasRegistry.connect() as registry:
            registry.move_alias(
                plan.model,
                "champion",
                str(plan.champion),
                expected=str(plan.challenger),
                actor=plan.actor,
                reason=f"rollout {plan.rollout_id} rolled back during bake: {reason}",
                request_id=f"rollout/{plan.rollout_id}{BAKE_ROLLBACK_SUFFIX}",
            )
    return table


def _split_steps(percents, shadowed: dict[str, Any]):  # -> run(plan, policy, gateway, store) for _guarded_step
    """Canary/ramp windows at `percents(policy)`; `shadowed` is the shadow step's result (its challenger scores)."""

    def run(plan, policy, gateway, store):
        from factory_providers.rollout.operations import hold_and_judge

        from pipelines.rollout.guardrails import BUCKETS, judge_split
        from pipelines.rollout.plan import split_routes
        from pipelines.rollout.window import version_window

        shadow_scores = BUCKETS.validate_python(shadowed["shadow_scores"]) if shadowed.get("shadow_scores") else None
        table = verdict = None
        for percent in percents(policy):
            routes = split_routes(plan.champion, plan.challenger, percent, plan.pool)
            table = gateway.apply_routes(store, plan.model, routes, reason=f"rollout {plan.rollout_id}: {percent:g} %")
            verdict = hold_and_judge(
                gateway,
                store,
                lambda window, percent=percent: judge_split(
                    f"{percent:g}%",
                    percent,
                    version_window(window, plan.model, plan.champion),
                    version_window(window, plan.model, plan.challenger),
                    policy.guardrails,
                    min_requests=policy.min_requests_per_step,
                    shadow_scores=shadow_scores,
                ),
                window_seconds=policy.step_window_seconds,
                max_extensions=policy.max_window_extensions,
            )
            if not verdict.passed:
                break
        return table, verdict

    return run


@dag(
    dag_id="factory_rollout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one rollout at a time: two would fight over the same routes
    tags=["factory", "serving", "rollout"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={
        "model_name": Param("flights-hgb", type="string", minLength=1, description="Registered model name"),
        "version": Param(
            "@challenger", type="string", pattern=r"^(@[A-Za-z0-9_-]+|[1-9][0-9]*)$", description='"7" or "@alias"'
        ),
        "policy": Param(
            "pipelines/configs/policies/rollout.yaml", type="string", description="Rollout policy (windows, limits)"
        ),
        "strategy": Param(
            "progressive",
            enum=["progressive", "blue_green"],
            description="progressive: canary and ramp in the serving pool; blue_green: deploy to the idle pool, "
            "shadow there, then switch every request at once",
        ),
    },
)
def factory_rollout():
    @task
    def plan_rollout(params: dict[str, Any] | None = None, ti=None) -> dict[str, Any]:
        from datetime import UTC, datetime

        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.gateway.hooks import GatewayHook
        from factory_providers.mlflow.aliases import AliasRegistry
        from factory_providers.rollout.operations import Rollout, StepRecorder
        from factory_providers.triton.hooks import TritonHook

        from pipelines.assembly import DATA_BUCKET, run_key
        from pipelines.rollout.plan import RolloutPlanError, idle_pool, rollout_versions
        from pipelines.rollout.policy import RolloutPolicyError, load_rollout_policy

        params = params or {}
        model = params["model_name"]
        try:
            policy = load_rollout_policy(params["policy"])  # a broken policy fails here, before anything moves
            with AliasRegistry.connect() as registry:
                champion, challenger = rollout_versions(registry.current(model), params["version"])
        except (RolloutPlanError, RolloutPolicyError) as error:
            raise AirflowFailException(str(error)) from None
        with GatewayHook().route_store() as store:
            current = store.get_routes(model)
        pool = current.routes.pool if current else "default"
        try:
            target_pool = idle_pool(list(TritonHook().pools), pool) if params["strategy"] == "blue_green" else pool
        except RolloutPlanError as error:
            raise AirflowFailException(str(error)) from None
        plan = Rollout(
            model=model,
            rollout_id=run_key(ti.run_id),
            champion=champion,
            challenger=challenger,
            pool=pool,
            target_pool=target_pool,
            policy_path=params["policy"],
            policy=policy,
            actor=f"airflow:{ti.dag_id}/{ti.run_id}",
        )
        detail = f"roll out v{challenger} over " + (f"champion v{champion}" if champion else "no champion")
        detail += f", blue-green from pool {pool} to {target_pool}" if plan.blue_green else f" in pool {pool}"
        StepRecorder(plan, DATA_BUCKET).write(0, "plan", "planned", datetime.now(UTC), detail=detail)
        return plan.model_dump()

    @task
    def deploy_challenger(rollout: dict[str, Any]) -> dict[str, Any]:
        from datetime import UTC, datetime

        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.rollout.operations import deploy
        from factory_providers.triton.fleet import FleetDeployError

        plan, policy, _, recorder = _context(rollout)
        started = datetime.now(UTC)
        live = [plan.challenger] + ([plan.champion] if plan.champion else [])
        try:
            report = deploy(plan.model, live, [plan.challenger], policy, pools=[plan.target_pool])
        except FleetDeployError as error:  # the fleet is back on what it served: the champion keeps serving
            recorder.write(1, "deploy", "failed", started, detail=str(error))
            raise AirflowFailException(str(error)) from None
        detail = f"v{plan.challenger} live on {len(report.hosts)} host(s) in {report.seconds:.1f} s, parity ok"
        recorder.write(1, "deploy", "deployed", started, detail=detail)
        return report.model_dump()

    @task
    def shadow(rollout: dict[str, Any]) -> dict[str, Any]:
        def run(plan, policy, gateway, store):
            from factory_providers.rollout.operations import hold_and_judge

            from pipelines.rollout.guardrails import judge_shadow
            from pipelines.rollout.plan import shadow_routes
            from pipelines.rollout.window import shadow_window, version_window

            routes = shadow_routes(plan.champion, plan.challenger, plan.pool, policy.shadow.share, plan.target_pool)
            table = gateway.apply_routes(store, plan.model, routes, reason=f"rollout {plan.rollout_id}: shadow")
            verdict = hold_and_judge(
                gateway,
                store,
                lambda window: judge_shadow(
                    version_window(window, plan.model, plan.champion),
                    shadow_window(window, plan.model, plan.challenger),
                    policy.guardrails,
                    min_requests=policy.shadow.min_requests,
                ),
                window_seconds=policy.shadow.window_seconds,
                max_extensions=policy.max_window_extensions,
            )
            return table, verdict

        return _guarded_step(rollout, 2, "shadow", run)

    @task
    def canary(rollout: dict[str, Any], shadowed: dict[str, Any]) -> dict[str, Any]:
        return _guarded_step(rollout, 3, "canary", _split_steps(lambda policy: policy.percent_steps[:1], shadowed))

    @task
    def ramp(rollout: dict[str, Any], shadowed: dict[str, Any]) -> dict[str, Any]:
        return _guarded_step(rollout, 4, "ramp", _split_steps(lambda policy: policy.percent_steps[1:], shadowed))

    # Blue-green has no split: routes name one pool, so the challenger's pool takes every request at the switch.

    @task
    def promote(rollout: dict[str, Any]) -> dict[str, Any]:
        """100 % to the challenger (applied by every replica), then the `champion` alias, compare-and-set."""
        from datetime import UTC, datetime

        from factory_providers.mlflow.aliases import AliasRegistry

        from pipelines.rollout.plan import champion_routes

        plan, _, gateway, recorder = _context(rollout)
        started = datetime.now(UTC)
        routes = champion_routes(plan.challenger, plan.target_pool)  # blue-green: the switch to the other pool
        with gateway.route_store() as store:
            table = gateway.apply_routes(store, plan.model, routes, reason=f"rollout {plan.rollout_id}")
        with AliasRegistry.connect() as registry:
            move = registry.move_alias(
                plan.model,
                "champion",
                str(plan.challenger),
                expected=str(plan.champion) if plan.champion else None,
                actor=plan.actor,
                reason=f"rollout {plan.rollout_id}: every step passed its guardrails",
                report_uri=recorder.uri(4, "ramp") if plan.champion else None,
                request_id=f"rollout/{plan.rollout_id}/promote",
            )
        detail = f"v{plan.challenger} is champion (alias log #{move.seq}); 100 % of traffic"
        recorder.write(5, "promote", "promoted", started, table=table, detail=detail)
        return {"alias_seq": move.seq}

    @task
    def bake(rollout: dict[str, Any]) -> dict[str, Any]:
        """Watch the new champion with the old one still loaded; a breach rolls back in seconds."""
        from factory_providers.rollout.operations import hold_and_judge

        from pipelines.rollout.guardrails import judge_alone
        from pipelines.rollout.window import version_window

        def run(plan, policy, gateway, store):
            verdict = hold_and_judge(
                gateway,
                store,
                lambda window: judge_alone(
                    "bake", version_window(window, plan.model, plan.challenger), policy.guardrails
                ),
                window_seconds=policy.bake_seconds,
                max_extensions=0,
            )
            return store.get_routes(plan.model), verdict

        return _guarded_step(rollout, 6, "bake", run)

    @task
    def unload_previous(rollout: dict[str, Any]) -> dict[str, Any]:
        """Only the new champion stays loaded; the routes stopped pointing at the old one before `bake`."""
        from datetime import UTC, datetime

        from factory_providers.rollout.operations import deploy

        plan, policy, _, recorder = _context(rollout)
        started = datetime.now(UTC)
        # Every pool serves the new champion alone; after a blue-green switch the old pool loads it (parity-checked)
        # so the next rollout has an idle pool that can take traffic back.
        report = deploy(plan.model, [plan.challenger], [plan.challenger] if plan.blue_green else [], policy)
        old = f"v{plan.champion} unloaded" if plan.champion else "nothing to unload"
        recorder.write(7, "unload", "unloaded", started, detail=f"{old}; v{plan.challenger} alone is live")
        return report.model_dump()

    @task(trigger_rule="all_done")
    def record_rollout(rollout: dict[str, Any], ti=None) -> dict[str, Any]:
        """The outcome on the version (MLflow tags) and as the rollout's last record, whatever happened."""
        from datetime import UTC, datetime

        from airflow.sdk.exceptions import AirflowFailException
        from factory_providers.mlflow.gate import set_version_tags
        from factory_providers.mlflow.hooks import MlflowHook

        plan, _, _, recorder = _context(rollout)
        results = {task_id: ti.xcom_pull(task_ids=task_id) for task_id in ROLLOUT_TASKS}
        stopped = next((task_id for task_id in ROLLOUT_TASKS if results[task_id] is None), None)
        outcome = "promoted" if stopped is None else f"stopped at {stopped}"
        recorder.write(9, "outcome", "failed" if stopped else "promoted", datetime.now(UTC), detail=outcome)
        with MlflowHook().tracking() as client:
            record = recorder.uri(9, "outcome")
            tags = {"rollout.id": plan.rollout_id, "rollout.outcome": outcome, "rollout.record": record}
            set_version_tags(client, plan.model, str(plan.challenger), tags)
        if stopped:  # the run must show failed: this task is its only leaf, and it ran after the failure
            raise AirflowFailException(f"rollout {plan.rollout_id} of v{plan.challenger} {outcome}")
        return {"outcome": outcome, "steps": list(results)}

    planned = plan_rollout()
    shadowed = shadow(planned)  # its challenger scores are what canary and ramp compare the live scores with
    chain(
        deploy_challenger(planned),
        shadowed,
        canary(planned, shadowed),
        ramp(planned, shadowed),
        promote(planned),
        bake(planned),
        unload_previous(planned),
        record_rollout(planned),
    )


ROLLOUT_TASKS = ("deploy_challenger", "shadow", "canary", "ramp", "promote", "bake", "unload_previous")

factory_rollout()
