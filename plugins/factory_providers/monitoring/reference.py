"""The reference side of the drift DAG: which registered version to compare with, and its profile in S3.

The reference is the version holding `champion` in the alias log; before any promotion there is none, and the
monitor falls back to `candidate` (the newest trained version) so a fresh factory is monitored from the first
deployment on, and says which alias it used. Its profile is built once per version from the version's own
training snapshot (hash-verified) and the version's own ONNX scores on those rows, then reused by every hourly
run: `profile.npz`, a bounded `reference_sample.parquet` (for the Evidently report) and `reference.json`
(written last: its presence means the other two are complete).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from factory_providers.mlflow.aliases import AliasRegistry
from factory_providers.s3.hooks import FactoryS3Hook

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.datasets.spec import DatasetSpec
    from pipelines.monitoring.monitor import ReferenceModel
    from pipelines.monitoring.policy import DriftPolicy
    from pipelines.monitoring.profile import ReferenceProfile

DATA_BUCKET = "factory-data"
REFERENCE_SAMPLE_ROWS = 20_000
SAMPLE_SEED = 2013


class ReferenceNotFoundError(LookupError):
    """No version to compare with (no champion, no candidate) or its lineage is incomplete; names what."""


@dataclass(frozen=True)
class ReferenceFiles:
    profile: str
    sample: str
    record: str


def reference_files(profile_key: str) -> ReferenceFiles:
    folder = profile_key.rsplit("/", 1)[0]
    stem = profile_key.rsplit("/", 1)[1].removesuffix(".npz")
    return ReferenceFiles(
        profile=profile_key, sample=f"{folder}/{stem}-sample.parquet", record=f"{folder}/{stem}-reference.json"
    )


def choose_reference(registry: AliasRegistry, model_name: str) -> tuple[str, str]:
    """(alias, version): the champion, else the candidate, from the alias log (MLflow's aliases if no log)."""
    state = registry.current(model_name)
    if not state:
        state = _mlflow_aliases(registry, model_name)
    for alias in ("champion", "candidate"):
        if alias in state:
            return alias, state[alias]
    raise ReferenceNotFoundError(
        f"registered model {model_name!r} has neither a champion nor a candidate: train one with factory_train"
    )


def ensure_reference(
    registry: AliasRegistry,
    *,
    model_name: str,
    spec: DatasetSpec,
    policy: DriftPolicy,
    hook: FactoryS3Hook | None = None,
    bucket: str = DATA_BUCKET,
) -> ReferenceModel:
    """The reference record of the current champion (or candidate), building its profile on first use."""
    from pipelines.monitoring.monitor import ReferenceModel, profile_key

    s3 = hook or FactoryS3Hook()
    alias, version = choose_reference(registry, model_name)
    details = registry.mlflow.get_model_version(model_name, version)
    tags = dict(details.tags or {})
    snapshot_id = tags.get("snapshot_id")
    if not snapshot_id:
        raise ReferenceNotFoundError(
            f"{model_name} v{version} ({alias}) has no snapshot_id tag: its training data is unknown, so there is "
            "no reference to compare traffic with"
        )
    files = reference_files(profile_key(spec.name, model_name, version, spec.features.version, policy.psi.bins))
    if s3.check_for_key(files.record, bucket_name=bucket):
        stored = ReferenceModel.model_validate_json(s3.read_key(files.record, bucket_name=bucket))
        return stored.model_copy(update={"alias": alias})  # the version may have been promoted since
    return _build_reference(
        registry, s3, bucket, files, model_name=model_name, version=version, alias=alias, tags=tags, spec=spec,
        policy=policy, run_id=details.run_id,
    )  # fmt: skip


def _build_reference(
    registry: AliasRegistry,
    s3: FactoryS3Hook,
    bucket: str,
    files: ReferenceFiles,
    *,
    model_name: str,
    version: str,
    alias: str,
    tags: dict[str, str],
    spec: DatasetSpec,
    policy: DriftPolicy,
    run_id: str | None,
) -> ReferenceModel:
    import tempfile
    from pathlib import Path

    from factory_providers.s3.snapshots import read_snapshot
    from pipelines.assembly import s3_uri
    from pipelines.monitoring.inference_log import encode_parquet
    from pipelines.monitoring.monitor import SCORE_COLUMN, ReferenceModel
    from pipelines.monitoring.profile import build_reference_profile

    manifest, frame = read_snapshot(spec.name, tags["snapshot_id"], hook=s3)
    onnx_model = fetch_onnx(registry, model_name, version)
    reference = frame[spec.features.columns].copy()
    reference[SCORE_COLUMN] = score_rows(onnx_model, reference)
    profile = build_reference_profile(reference, spec.features, policy, prediction_column=SCORE_COLUMN)
    sample = reference.sample(n=min(REFERENCE_SAMPLE_ROWS, len(reference)), random_state=SAMPLE_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        path = profile.save(Path(tmp) / "profile.npz")
        s3.load_file(str(path), files.profile, bucket_name=bucket, replace=True)
    s3.load_bytes(encode_parquet(sample.reset_index(drop=True)), files.sample, bucket_name=bucket, replace=True)
    record = ReferenceModel(
        model_name=model_name,
        alias=alias,  # type: ignore[arg-type]
        version=version,
        run_id=run_id,
        snapshot_id=manifest.snapshot_id,
        feature_spec_version=tags.get("feature_spec_version"),
        interval_start=manifest.interval_start,
        interval_end=manifest.interval_end,
        rows=len(reference),
        profile_uri=s3_uri(bucket, files.profile),
    )
    # Last: a record in S3 means profile and sample are complete (a crash before it rebuilds next time).
    s3.load_string(record.model_dump_json(indent=2), files.record, bucket_name=bucket, replace=True)
    return record


def load_reference_profile(
    record: ReferenceModel, hook: FactoryS3Hook | None = None
) -> tuple[ReferenceProfile, pd.DataFrame]:
    """The stored profile and the bounded reference sample of a reference record."""
    import tempfile
    from pathlib import Path

    from pipelines.monitoring.inference_log import decode_parquet
    from pipelines.monitoring.profile import ReferenceProfile

    s3 = hook or FactoryS3Hook()
    bucket, key = _split_uri(record.profile_uri)
    files = reference_files(key)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "profile.npz"
        local.write_bytes(s3.get_key(files.profile, bucket_name=bucket).get()["Body"].read())
        profile = ReferenceProfile.load(local)
    sample = decode_parquet(s3.get_key(files.sample, bucket_name=bucket).get()["Body"].read())
    return profile, sample


def score_rows(onnx_model: bytes, frame: pd.DataFrame) -> Any:
    """The reference model's positive-class probability per row (the serving contract's input casting)."""
    from pipelines.export.runtime import onnx_predict_proba

    return onnx_predict_proba(onnx_model, frame)


def fetch_onnx(registry: AliasRegistry, model_name: str, version: str) -> bytes:
    from factory_providers.mlflow.gate import fetch_version_onnx

    onnx_model = fetch_version_onnx(registry.mlflow, model_name, version)
    if onnx_model is None:
        raise ReferenceNotFoundError(f"{model_name} v{version} has no model.onnx in the registry")
    return onnx_model


def _mlflow_aliases(registry: AliasRegistry, model_name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {
            alias: str(version) for alias, version in registry.mlflow.get_registered_model(model_name).aliases.items()
        }
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ReferenceNotFoundError(
                f"registered model {model_name!r} does not exist: train it with factory_train first"
            ) from None
        raise


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key
