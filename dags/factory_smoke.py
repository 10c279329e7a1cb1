"""Stack smoke test: S3 write, an MLflow run with its artifact in S3, a model loaded into Triton, a checked prediction.

Trigger it from the UI (or `factory demo`) after `factory stack up`: if it is green, every service the factory
needs is reachable through its Airflow Connection.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from factory_providers.notifier import EmailNotifier, WebhookNotifier

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=5),
    "on_failure_callback": [WebhookNotifier(), EmailNotifier()],
}


@dag(
    dag_id="factory_smoke",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["factory", "smoke"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def factory_smoke():
    @task
    def write_s3_object(run_id: str | None = None) -> str:
        from factory_providers.s3.hooks import FactoryS3Hook

        hook = FactoryS3Hook()
        bucket, key = "factory-data", f"smoke/{run_id}.txt"
        hook.load_string(f"smoke run {run_id}", key=key, bucket_name=bucket, replace=True)
        if hook.read_key(key, bucket_name=bucket) != f"smoke run {run_id}":
            raise RuntimeError(f"s3://{bucket}/{key} did not read back what was written")
        return f"s3://{bucket}/{key}"

    @task
    def log_mlflow_run(s3_uri: str, run_id: str | None = None) -> str:
        import mlflow
        from factory_providers.mlflow.hooks import MlflowHook

        with MlflowHook().tracking() as client:
            mlflow.set_experiment("factory-smoke")
            with mlflow.start_run(run_name=f"smoke-{run_id}") as run:
                mlflow.log_param("s3_object", s3_uri)
                mlflow.log_metric("smoke", 1.0)
                mlflow.log_text(f"airflow run {run_id}", "smoke.txt")
            artifacts = [item.path for item in client.list_artifacts(run.info.run_id)]
        if "smoke.txt" not in artifacts:
            raise RuntimeError(f"MLflow run {run.info.run_id} has no smoke.txt artifact (found {artifacts})")
        return run.info.run_id

    @task
    def load_smoke_model() -> str:
        from factory_providers.s3.hooks import FactoryS3Hook
        from factory_providers.triton.hooks import TritonHook
        from factory_providers.triton.repository import publish_model_files

        from serving.triton.smoke import SMOKE_MODEL_NAME, smoke_model_files

        triton = TritonHook()
        bucket, prefix = triton.repository
        publish_model_files(FactoryS3Hook(), bucket, prefix, SMOKE_MODEL_NAME, smoke_model_files())
        triton.load_model(SMOKE_MODEL_NAME)
        return SMOKE_MODEL_NAME

    @task
    def check_prediction(model_name: str) -> list[float]:
        from factory_providers.triton.hooks import TritonHook

        from serving.triton.smoke import SMOKE_INPUT, check_prediction

        y = TritonHook().infer(model_name, {"x": SMOKE_INPUT}, ["y"])["y"]
        check_prediction(SMOKE_INPUT, y)
        return y.ravel().tolist()

    log_mlflow_run(write_s3_object()) >> check_prediction(load_smoke_model())


factory_smoke()
