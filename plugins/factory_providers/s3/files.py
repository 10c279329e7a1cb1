"""Read one time interval of a dataset from its source files in S3 (Parquet or CSV), through `factory_s3`.

The files path of extraction, next to the SQL table of `factory_providers.source.hooks` (same errors, same
conform step, so the same rows give the same snapshot). Objects under the spec's `source.files.uri_prefix` with
the format's extension are listed once; each is then read pinned to the ETag it was listed with (If-Match on
every GET), so a file a producer overwrites mid-run fails the read instead of mixing two versions, and the
manifest names exactly the versions read. Parquet is read by ranges: the footer, then only the row groups whose
time statistics overlap the interval. What is decided from the bytes lives in `pipelines.datasets.source_files`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from factory_providers.s3.hooks import FactoryS3Hook
from factory_providers.source.hooks import (
    SourceExtractionError,
    check_interval,
    empty_interval_error,
    lacks_columns_error,
)

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.datasets.source_files import FileRead, SourceObject
    from pipelines.datasets.spec import DatasetSpec, FileSourceSpec


@dataclass(frozen=True)
class FileExtraction:
    frame: pd.DataFrame  # conformed rows of the interval, from every file
    source_query: str  # for the snapshot manifest: prefix, filter, objects read with their ETags


def extract_files_interval(
    spec: DatasetSpec, start: datetime, end: datetime, *, hook: FactoryS3Hook | None = None
) -> FileExtraction:
    """The rows with `start <= time < end` from the spec's source files, typed like the SQL source's."""
    import pandas as pd

    from pipelines.assembly import conform_source_frame
    from pipelines.datasets.source_files import describe_file_extraction, held_text, select_objects

    check_interval(start, end)
    files = spec.source.files
    if files is None:
        raise SourceExtractionError(f"dataset spec {spec.name!r} {spec.version} declares no source.files")
    hook = hook or FactoryS3Hook()
    listing = select_objects(hook.iter_file_metadata(files.key_prefix, bucket_name=files.bucket), files)
    if not listing:
        raise SourceExtractionError(
            f"no {files.extension} files under {files.uri_prefix} (connection {hook.aws_conn_id!r}); "
            "seed them with `factory seed` or fix source.files in the dataset spec"
        )
    reads = [(obj, _read_file(hook, files, obj, spec, start, end)) for obj in listing]
    frames = [read.rows for _, read in reads if read.rows is not None]
    if not frames:
        subject = f"the {len(listing)} {files.format} files under {files.uri_prefix}"
        raise empty_interval_error(subject, spec, start, end, held_text(read for _, read in reads))
    # Empty pieces were left out above: pandas would let an empty frame's dtypes take part in the concat.
    frame = pd.concat(frames, ignore_index=True)
    return FileExtraction(
        frame=conform_source_frame(frame, spec),
        source_query=describe_file_extraction(spec, files, start, end, reads),
    )


def _read_file(
    hook: FactoryS3Hook, files: FileSourceSpec, obj: SourceObject, spec: DatasetSpec, start: datetime, end: datetime
) -> FileRead:
    from pipelines.datasets.source_files import (
        MissingColumnsError,
        SourceFileError,
        read_csv_interval,
        read_parquet_interval,
    )

    uri = f"s3://{files.bucket}/{obj.key}"
    reader = _PinnedObjectReader(hook.get_conn(), files.bucket, obj)
    try:
        if files.format == "parquet":
            return read_parquet_interval(_as_arrow_file(reader), spec, start, end)
        return read_csv_interval(reader.readall(), spec, start, end)  # CSV has no index to read parts by
    except MissingColumnsError as error:
        raise lacks_columns_error(f"source file {uri}", spec, error.missing, error.present, noun="file") from None
    except SourceFileError as error:
        raise SourceExtractionError(f"source file {uri}: {error}") from None


def _as_arrow_file(reader: _PinnedObjectReader) -> Any:  # pyarrow.PythonFile; pyarrow stays unimported at parse
    import pyarrow as pa

    return pa.PythonFile(reader, mode="r")


class _PinnedObjectReader(io.RawIOBase):
    """A seekable, read-only view of one object version: each read is a ranged GET with If-Match on its ETag."""

    def __init__(self, client: Any, bucket: str, obj: SourceObject) -> None:
        super().__init__()
        self._client, self._bucket, self._obj, self._position = client, bucket, obj, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._obj.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._obj.size - self._position)
        if size <= 0:
            return 0
        data = self._get(f"bytes={self._position}-{self._position + size - 1}")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def readall(self) -> bytes:
        """The rest of the object in one GET (io's default would loop over 8 KiB reads)."""
        if self._position >= self._obj.size:
            return b""
        data = self._get(f"bytes={self._position}-{self._obj.size - 1}")
        self._position += len(data)
        return data

    def _get(self, byte_range: str) -> bytes:
        from botocore.exceptions import ClientError

        uri = f"s3://{self._bucket}/{self._obj.key}"
        request = {"Bucket": self._bucket, "Key": self._obj.key, "IfMatch": f'"{self._obj.etag}"'}
        try:
            return self._client.get_object(**request, Range=byte_range)["Body"].read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in {"PreconditionFailed", "412"}:
                raise SourceExtractionError(
                    f"source file {uri} changed while it was read (ETag is no longer {self._obj.etag}); "
                    "retry to read the new version"
                ) from None
            if code in {"NoSuchKey", "404"}:
                raise SourceExtractionError(f"source file {uri} was deleted while it was read") from None
            raise SourceExtractionError(f"cannot read source file {uri}: {error}") from error
