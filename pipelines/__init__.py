"""Pure, typed model-factory logic. Nothing in this package imports Airflow."""
