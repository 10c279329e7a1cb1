# MLflow tracking server + registry; backend store in PostgreSQL, artifacts proxied to S3.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "boto3" "psycopg2-binary"
EXPOSE 5000
ENTRYPOINT ["mlflow", "server"]
