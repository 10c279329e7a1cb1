# Triton for GPU hosts: NVIDIA's official NGC image (2.51.0 = release 24.10, the same server version the local
# nvidia-pytriton wheel ships). Models use the `gpu` repository profile: platform "onnxruntime_onnx", KIND_GPU.
# docker build -f docker/triton.Dockerfile -t model-factory/triton .
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# The python backend is only needed for the cpu-local profile; keep its numpy on 1.x (see serving/triton/requirements.txt).
COPY serving/triton/requirements.txt /opt/factory/triton-requirements.txt
RUN pip install --no-cache-dir "numpy==1.26.4" "onnxruntime==1.32.0"

# Model repository in S3 (credentials from the environment); explicit control: the factory's deploy DAG loads and
# unloads versions through the repository API.
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=s3://http://s3:8333/triton-models/repository", "--model-control-mode=explicit", \
     "--strict-readiness=true", "--exit-timeout-secs=30"]
