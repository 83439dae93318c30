"""MLflow tracking that never takes training down with it.

Every call goes through ``Tracker``; if the tracking server is unreachable, the first failure
prints one warning and the tracker turns itself off, so training and DVC outputs still complete.
The run id is kept in the model directory so ``evaluate`` (a separate process) adds to the
same run.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Fail fast instead of retrying for minutes when the server is down.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

SECRET_MARKERS = ("password", "token", "secret", "credential", "api_key")


def git_commit(cwd: str | Path = ".") -> str:
    """The current git commit, or 'unknown' outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def use_tracking_uri(uri: str) -> None:
    """Point MLflow's fluent API at ``uri`` without touching ``MLFLOW_TRACKING_URI``.

    ``mlflow.set_tracking_uri`` also exports the URI as ``MLFLOW_TRACKING_URI``; since that
    variable overrides ``mlflow.tracking_uri`` in params, a second stage run in the same process
    with other params would otherwise log to the first one's store.
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": value}; secret-looking keys are dropped, never logged."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if any(m in str(k).lower() for m in SECRET_MARKERS):
                continue
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


class Tracker:
    """A thin, failure-tolerant wrapper around one MLflow run."""

    def __init__(self, tracking_uri: str, experiment: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_id: str | None = None
        self._mlflow: Any = None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # any tracking failure must not stop training
            warnings.warn(f"MLflow {what} failed ({type(exc).__name__}: {str(exc)[:200]}); "
                          f"tracking is off for the rest of this run", stacklevel=2)
            print(f"WARNING: MLflow {what} failed at {self.tracking_uri}; continuing without tracking")
            self.enabled = False
            return None

    def start(self, run_name: str, run_id: str | None = None, tags: dict[str, str] | None = None,
              parent_run_id: str | None = None) -> str | None:
        """Start (or resume, given ``run_id``) a run; returns its id or None when tracking is off."""
        def _start() -> str:
            import mlflow

            self._mlflow = mlflow
            use_tracking_uri(self.tracking_uri)
            if run_id is None:
                mlflow.set_experiment(self.experiment)
            kwargs: dict[str, Any] = {"run_id": run_id} if run_id else {"run_name": run_name}
            if parent_run_id:
                kwargs["parent_run_id"] = parent_run_id
                kwargs["nested"] = True
            run = mlflow.start_run(**kwargs, tags=tags)
            return run.info.run_id

        self.run_id = self._call("start_run", _start)
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log flat params (strings up to MLflow's limit)."""
        self._call("log_params", lambda: self._mlflow.log_params(
            {k: str(v)[:500] for k, v in params.items()}))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics at an optional step."""
        self._call("log_metrics", lambda: self._mlflow.log_metrics(
            {k: float(v) for k, v in metrics.items()}, step=step))

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set run tags."""
        self._call("set_tags", lambda: self._mlflow.set_tags(tags))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload one file."""
        self._call("log_artifact", lambda: self._mlflow.log_artifact(str(path), artifact_path))

    def call(self, what: str, fn: Any) -> Any:
        """Run any MLflow call under the same failure policy."""
        return self._call(what, fn)

    def end(self, status: str = "FINISHED") -> None:
        """End the active run."""
        self._call("end_run", lambda: self._mlflow.end_run(status=status))
