-- The MLflow backend store lives beside Airflow's metadata DB (created by POSTGRES_DB).
CREATE DATABASE factory_mlflow OWNER factory;
