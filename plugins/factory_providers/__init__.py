"""Provider-style hooks and operators for the systems the factory talks to (S3, MLflow, Triton).

Hooks own their Connection (default ids `factory_s3`, `factory_mlflow`, `factory_triton`, supplied as
AIRFLOW_CONN_* by the stack) and are built lazily inside `execute`, never at DAG parse time.
"""
