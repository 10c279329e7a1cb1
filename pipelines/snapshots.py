"""Content-addressed data snapshots: the exact rows a model was trained on, named by the hash of their bytes.

The same rows must give the same bytes, or the id would name a write rather than the data. So the Parquet is
canonical: columns in a fixed order (time column, key columns, then the rest by name), rows sorted by time and
keys (and by every column when the keys do not make rows unique), no pandas metadata (it embeds the pandas
version), and fixed writer options. The id still depends on the pyarrow version that encodes the file (its
name is written in the footer); the manifest records that writer so a changed id after an upgrade is
explained, not mysterious.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pipelines.datasets.spec import DatasetSpec

PARQUET_WRITE_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 262_144,
    "data_page_size": 1 << 20,
    "version": "2.6",
    "data_page_version": "1.0",
}


class SnapshotIntegrityError(ValueError):
    """Snapshot bytes that do not match their manifest: tampered, truncated, or the wrong manifest."""


class SnapshotManifest(BaseModel):
    """One snapshot. `snapshot_id` is the sha256 of the Parquet bytes; `created_at` is not hashed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    dataset: str
    spec_version: str
    rows: int = Field(ge=0)
    size_bytes: int = Field(ge=0)
    column_types: dict[str, str] = Field(description="column -> pandas dtype, in file order")
    source_query: str
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    parquet_writer: str
    created_at: AwareDatetime

    @model_validator(mode="after")
    def _check_interval(self) -> SnapshotManifest:
        if self.interval_start >= self.interval_end:
            raise ValueError(f"interval_start {self.interval_start} is not before interval_end {self.interval_end}")
        return self


@dataclass(frozen=True)
class Snapshot:
    data: bytes
    manifest: SnapshotManifest


def canonical_order(frame: pd.DataFrame, time_column: str, key_columns: list[str]) -> pd.DataFrame:
    """The frame with canonical column order and row order, and a fresh index."""
    missing = [c for c in (time_column, *key_columns) if c not in frame.columns]
    if missing:
        raise KeyError(f"snapshot ordering columns {missing} are missing; frame has {sorted(frame.columns)}")
    identity = [time_column, *key_columns]
    columns = [*identity, *sorted(c for c in frame.columns if c not in identity)]
    ordered = frame[columns].reset_index(drop=True)  # the index is not data: it never reaches the file
    sort_by = identity if not ordered.duplicated(subset=identity).any() else columns
    return ordered.sort_values(sort_by, kind="stable", na_position="last", ignore_index=True)


def canonical_parquet_bytes(frame: pd.DataFrame, time_column: str, key_columns: list[str]) -> bytes:
    """Deterministic Parquet encoding of the frame's rows (see the module docstring for what makes it so)."""
    return _encode(canonical_order(frame, time_column, key_columns))


def _encode(ordered: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(ordered, preserve_index=False)
    table = table.replace_schema_metadata(None)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **PARQUET_WRITE_OPTIONS)
    return buffer.getvalue()


def build_snapshot(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    *,
    source_query: str,
    interval_start: datetime,
    interval_end: datetime,
    created_at: datetime | None = None,
) -> Snapshot:
    """Encode the rows extracted for [interval_start, interval_end) and describe them."""
    ordered = canonical_order(frame, spec.time_column, spec.source.key_columns)
    data = _encode(ordered)
    manifest = SnapshotManifest(
        snapshot_id=hashlib.sha256(data).hexdigest(),
        dataset=spec.name,
        spec_version=spec.version,
        rows=len(ordered),
        size_bytes=len(data),
        column_types={column: str(dtype) for column, dtype in ordered.dtypes.items()},
        source_query=source_query,
        interval_start=interval_start,
        interval_end=interval_end,
        parquet_writer=f"pyarrow {pa.__version__}",
        created_at=created_at or datetime.now(UTC),
    )
    return Snapshot(data=data, manifest=manifest)


def verify_snapshot(data: bytes, manifest: SnapshotManifest) -> None:
    """Raise `SnapshotIntegrityError` unless `data` is exactly the snapshot the manifest describes."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.snapshot_id:
        raise SnapshotIntegrityError(
            f"snapshot {manifest.snapshot_id[:12]} of {manifest.dataset!r}: bytes hash to {actual[:12]} "
            f"({len(data)} bytes, manifest says {manifest.size_bytes}): changed, or not this snapshot"
        )
    rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    if rows != manifest.rows:
        raise SnapshotIntegrityError(
            f"snapshot {manifest.snapshot_id[:12]} of {manifest.dataset!r}: file holds {rows} rows, "
            f"manifest says {manifest.rows}; the manifest was edited"
        )


def load_snapshot(data: bytes, manifest: SnapshotManifest) -> pd.DataFrame:
    """Verify, then decode a snapshot to a DataFrame."""
    verify_snapshot(data, manifest)
    return pq.read_table(io.BytesIO(data)).to_pandas()
