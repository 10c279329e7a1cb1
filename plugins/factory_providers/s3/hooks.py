"""S3 access for the factory, on top of the Amazon provider's S3Hook (endpoint and keys come from the Connection)."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook


class FactoryS3Hook(S3Hook):
    """S3Hook defaulting to the factory's connection, with the write-once semantics snapshots and models need."""

    default_conn_name = "factory_s3"
    hook_name = "Model factory S3"

    def __init__(self, aws_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)

    def put_if_absent(self, data: bytes, bucket: str, key: str) -> bool:
        """Write `data` unless the key exists already. Returns True if written.

        Keys written this way are content-addressed (their name contains the sha256 of the content), so an existing
        key already holds these bytes: a retry or a re-run writes nothing twice.
        """
        if self.check_for_key(key, bucket_name=bucket):
            return False
        self.load_bytes(data, key=key, bucket_name=bucket, replace=False)
        return True
