"""Checks that only apply when a stage runs as a Kubeflow task: no silent local fallbacks.

On a laptop an unset tracking URI means the embedded ``sqlite:///mlflow.db`` and an unset Optuna
storage means a file beside the project: both are right there. In a pod the same defaults would
write into the pod's disk, which is deleted when the task ends, while the run looks green. So a
task that finds itself in Kubeflow refuses a local store, or a server it cannot reach, with one
line naming the Kubernetes secret to create.

How a task knows where it runs: the KFP backend's Argo compiler puts ``KFP_POD_NAME`` and
``KFP_POD_UID`` on every executor container (``backend/src/v2/compiler/argocompiler/common.go``,
``commonEnvs``); ``NEWSRNN_CLUSTER=1`` turns the same checks on anywhere (the cluster rehearsal
test runs kfp's local runner with it).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from newsrnn.config import Config, _is_local_store
from newsrnn.errors import ClusterConfigError, redact

ENV_CLUSTER = "NEWSRNN_CLUSTER"
ENV_POD_NAME = "KFP_POD_NAME"
MLFLOW_SECRET = "newsrnn-mlflow"
OPTUNA_SECRET = "newsrnn-optuna"
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "mysql": 3306,
                  "mssql": 1433}


def in_kubeflow() -> bool:
    """True inside a KFP executor pod, or when ``NEWSRNN_CLUSTER=1`` asks for cluster rules."""
    return bool(os.environ.get(ENV_POD_NAME)) or os.environ.get(ENV_CLUSTER, "") == "1"


def local_store(uri: str | None) -> bool:
    """A store held on this machine's disk: SQLite, ``file:``, an Optuna journal or a bare path."""
    return _is_local_store(uri)


def loopback(uri: str | None) -> bool:
    """The URI names this host; inside a pod that is the pod itself, never a shared server."""
    host = (urlsplit(uri or "").hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _reachable(uri: str, timeout: float = 10.0) -> str | None:
    """None if something accepts a TCP connection at the URI's host and port, else why not."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return f"bad port in {redact(uri)}"
    if not parts.hostname or not port:
        return None  # a scheme we cannot probe (databricks, ...): let the client decide
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc.strerror or exc}"


def tracking_uri(cfg: Config, override: str = "") -> str:
    """The MLflow tracking URI a stage should use, checked when running in Kubeflow.

    ``override`` (the task's ``mlflow_tracking_uri`` parameter) wins, then ``MLFLOW_TRACKING_URI``
    (from the ``newsrnn-mlflow`` secret), then ``mlflow.tracking_uri``. Locally that is all; in
    Kubeflow an empty, local or unreachable URI is an error, unless tracking is turned off
    (``mlflow.enabled: false``).
    """
    uri = override or cfg.tracking_uri()
    if not in_kubeflow() or not cfg.mlflow.enabled:
        return uri
    fix = (f"put MLFLOW_TRACKING_URI=<server URL> in the Kubernetes secret {MLFLOW_SECRET!r} "
           "(kubectl create secret generic newsrnn-mlflow --from-literal=MLFLOW_TRACKING_URI=https://...) "
           "or pass the mlflow_tracking_uri parameter")
    return _shared_store(uri, missing="without an MLflow tracking server",
                         local=f"with the local MLflow store {redact(uri)!r}, which dies with the pod",
                         unreachable=f"MLflow tracking server {redact(uri)}",
                         check=f"check the server and the URL in the secret {MLFLOW_SECRET!r}", fix=fix)


def optuna_storage(url: str) -> str:
    """``url`` checked for a cluster: the shared RDB every tuning pod must reach."""
    if not in_kubeflow():
        return url
    fix = (f"put NEWSRNN_OPTUNA_STORAGE=postgresql+psycopg2://... in the Kubernetes secret {OPTUNA_SECRET!r} "
           "or pass the optuna_storage parameter")
    return _shared_store(url, missing="with tuning on but no shared Optuna storage",
                         local=f"with the local Optuna storage {redact(url)!r}, private to one pod",
                         unreachable=f"Optuna storage {redact(url)}",
                         check=f"check the database and the URL in the secret {OPTUNA_SECRET!r}", fix=fix)


def _shared_store(uri: str, missing: str, local: str, unreachable: str, check: str, fix: str) -> str:
    """``uri`` if every pod can use it; else one line saying what is wrong and how to fix it."""
    if not uri:
        raise ClusterConfigError(f"running in Kubeflow {missing}: {fix}")
    if local_store(uri):
        raise ClusterConfigError(f"running in Kubeflow {local}: {fix}")
    why = _reachable(uri)
    if why:
        raise ClusterConfigError(f"{unreachable} is not reachable from this task ({why}); {check}")
    return uri


def ensure_experiment(uri: str, name: str) -> str:
    """Create the MLflow experiment ``name`` if missing; returns its id.

    Run once before the fan-out: parallel pods creating it at the same moment race, and the
    loser's tracking would otherwise be switched off with a warning.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except mlflow.exceptions.MlflowException:
        exp = client.get_experiment_by_name(name)  # created meanwhile by someone else
        if exp is None:
            raise
        return exp.experiment_id


def submit_checks(args: dict[str, object], cfg: Config) -> list[str]:
    """Why these run arguments cannot work on a cluster (empty when they can).

    ``submit`` refuses local stores and loopback hosts: a pod would write into its own disk or
    call itself. An empty tracking URI is fine: tasks then read it from the secret.
    """
    problems = []
    uri = str(args.get("mlflow_tracking_uri") or "")
    for name, value, secret, key in (("mlflow_tracking_uri", uri, MLFLOW_SECRET, "MLFLOW_TRACKING_URI"),
                                     ("optuna_storage", str(args.get("optuna_storage") or ""), OPTUNA_SECRET,
                                      "NEWSRNN_OPTUNA_STORAGE")):
        if value and (local_store(value) or loopback(value)):
            problems.append(f"{name}={redact(value)!r} is a store on this machine, which no pod can use; leave "
                            f"it empty and create the secret {secret!r} with {key}=<server URL> "
                            f"(kubectl create secret generic {secret} --from-literal={key}=...)")
    if cfg.tune.storage and local_store(cfg.tune.storage):
        problems.append(f"tune.storage={redact(cfg.tune.storage)!r} is a local file, private to one pod; set it "
                        f"to null and put NEWSRNN_OPTUNA_STORAGE in the secret {OPTUNA_SECRET!r}")
    return problems
