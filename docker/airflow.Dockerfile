# Airflow image for the production profile: the official base plus the project's locked orchestration env.
# Built from the repository root: docker build -f docker/airflow.Dockerfile -t model-factory/airflow .
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

# The project with the same exact pins the local env is tested with. torch comes from the CPU wheel index: Airflow
# workers do not need CUDA (GPU inference runs in the Triton image), and the CUDA build would add several GB.
COPY --chown=airflow:root . /opt/factory
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
      -c /opt/factory/constraints.txt /opt/factory \
 && cp -r /opt/factory/dags/. /opt/airflow/dags/ && cp -r /opt/factory/plugins/. /opt/airflow/plugins/

ENV AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=false \
    FACTORY_IMAGE=model-factory/airflow
