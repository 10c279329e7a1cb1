"""The factory view's adapters: fetching its records from MLflow, S3, Redis and the Airflow metadata DB."""
