# syntax=docker/dockerfile:1.7
# The image every Kubeflow task runs in (params.yaml: kfp.base_image). TensorFlow's CUDA build
# brings CUDA and cuDNN as pip wheels, so the node only needs the NVIDIA driver (mounted by the
# device plugin). Everything, kfp included, is installed here against constraints.txt: nothing is
# pip-installed when a task starts.
#
#   docker build -t ghcr.io/newsrnn/newsrnn:0.1.0 .
#   docker push ghcr.io/newsrnn/newsrnn:0.1.0
#
# Pin the base by digest for a reproducible build: python:3.11-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer: a code change does not reinstall TensorFlow. The gpu
# extra brings the DVC remotes (s3, gs, azure) and boto3 for S3 artifact stores;
# tests/integration/test_image_deps.py resolves exactly this set against constraints.txt.
COPY pyproject.toml constraints.txt README.md* ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["gpu"]))
PY
RUN pip install -c constraints.txt -r /tmp/requirements.txt
COPY src ./src
# --no-deps: every dependency is already installed, pinned, above.
RUN pip install --no-deps . \
 && pip check \
 && python -c "import newsrnn.cli, kfp, mlflow, optuna, dvc.api, dvc_s3, dvc_gs, dvc_azure, boto3, tensorflow as tf; print('tf', tf.__version__)"

FROM ${PYTHON_IMAGE}
# git: dvc.api clones the data repo at the requested revision.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
# The KFP launcher stages artifacts under /gcs, /minio and /s3; a non-root user needs them writable.
RUN useradd --create-home --uid 1000 newsrnn \
 && mkdir -p /gcs /minio /s3 /work \
 && chown newsrnn:newsrnn /gcs /minio /s3 /work
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    TF_CPP_MIN_LOG_LEVEL=2
USER 1000
WORKDIR /work
CMD ["newsrnn", "--help"]
