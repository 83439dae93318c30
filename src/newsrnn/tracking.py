"""MLflow tracking that never takes training down with it.

Every call goes through ``Tracker``; if the tracking server is unreachable, the first failure
prints one warning and the tracker turns itself off, so training and DVC outputs still complete.
The run id is kept in the model directory so ``evaluate`` (a separate process) adds to the
same run.

What the MLflow UI shows, and why:

- The experiment carries ``mlflow.experimentKind = custom_model_development`` (what MLflow's
  own kind selector writes) and a saved view of its runs table for choosing a model. MLflow
  3.17's UI still picks its GenAI pages or its model-training pages from a per-browser toggle
  (default GenAI), so the link ``runs_page`` builds carries ``workflowType=machine_learning``.
- Metrics logged with a step are per-epoch curves and go under ``epoch/<key>``; the plain keys
  (``val_accuracy``, ``test_accuracy``, ...) hold the exported model's values only, so sorting the
  runs table by ``val_accuracy`` ranks candidates exactly as ``register`` does.
- Every new run carries the lineage tags of ``lineage_tags()`` (git commit, DVC revision and
  data hash, DVC experiment name, Kubeflow run id).
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
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
EPOCH_PREFIX = "epoch/"
# The KFP v2 launcher exports no run id to the container; the pipeline passes it in
# (dsl.PIPELINE_JOB_ID_PLACEHOLDER, or the pod label ``pipeline/runid`` via the downward API).
KFP_RUN_ENV = ("NEWSRNN_KFP_RUN_ID", "KFP_RUN_ID")
# `dvc exp run` exports these to every stage command (dvc/env.py; set by the experiments queue).
DVC_EXP_ENV = {"dvc_exp_name": "DVC_EXP_NAME", "dvc_exp_baseline": "DVC_EXP_BASELINE_REV"}


def _git(args: list[str], cwd: str | Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: str | Path = ".") -> str:
    """The current git commit, or 'unknown' outside a repository."""
    return _git(["rev-parse", "HEAD"], cwd) or "unknown"


def dvc_data_md5(cwd: str | Path = ".", path: str = "data/prepared") -> str | None:
    """The md5 DVC recorded for ``path`` in dvc.lock (what ``dvc checkout`` restores), if any."""
    import yaml

    lock = Path(cwd) / "dvc.lock"
    if not lock.exists():
        return None
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return None
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            if out.get("path") == path:
                return out.get("md5")
    return None


def lineage_tags(cwd: str | Path = ".") -> dict[str, str]:
    """Where a run came from: code (git), data (DVC), and the orchestrator's run, when there is one.

    ``dvc_rev`` is the commit whose dvc.lock pins the data; ``dvc_data_md5`` is the prepared
    data's hash in it. Keys that do not apply (no DVC experiment, not on Kubeflow) are left out.
    """
    tags = {"git_commit": git_commit(cwd)}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    if status is not None:
        tags["git_dirty"] = "true" if status else "false"
    if (Path(cwd) / "dvc.yaml").exists() and tags["git_commit"] != "unknown":
        tags["dvc_rev"] = tags["git_commit"]
    md5 = dvc_data_md5(cwd)
    if md5:
        tags["dvc_data_md5"] = md5
    summary = Path(cwd) / "data/prepared/summary.json"
    if summary.exists():  # stages given other paths pass their own data_sha256 tag
        import json

        sha = json.loads(summary.read_text()).get("data_sha256")
        if sha:
            tags["data_sha256"] = sha
    for key, var in DVC_EXP_ENV.items():
        if os.environ.get(var):
            tags[key] = os.environ[var]
    for var in KFP_RUN_ENV:
        if os.environ.get(var):
            tags["kfp_run_id"] = os.environ[var]
            break
    return tags


# The runs-table view for choosing a model: one row per evaluated candidate, the exported model's
# numbers as columns, best validation accuracy first. MLflow 3.17 keeps saved views of the runs
# page as experiment tags "mlflow.sharedViewState.<key>" (listed under "Views", opened with
# ?viewStateShareKey=<key>); its value is {name, createdAt, updatedAt, state: JSON of the page state}.
VIEW_KEY = "model-choice"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_METRICS = ("val_accuracy", "test_accuracy", "macro_f1", "latency_p50_ms", "throughput_per_s",
                "model_size_mb", "train_seconds")


def model_choice_view() -> dict[str, Any]:
    """The page state of the model-choice view (search facets and columns of the runs table)."""
    return {
        "searchFilter": "tags.evaluated = 'true'",
        "orderByKey": "metrics.`val_accuracy`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": ["attributes.`Dataset`", "attributes.`Models`", "tags.`arch`",
                            *(f"metrics.`{m}`" for m in VIEW_METRICS), "tags.`git_commit`"],
    }


def runs_page(tracking_uri: str, experiment_id: str, base_url: str = "http://127.0.0.1:5000") -> str:
    """The URL of the model-choice view of the runs page.

    MLflow 3.17's UI decides between its GenAI pages and its model-training pages from a toggle
    kept per browser (default GenAI), not from the experiment, so the link carries
    ``workflowType=machine_learning``.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else base_url
    return (f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={VIEW_KEY}")


def mark_training_experiment(client: Any, experiment_id: str) -> None:
    """Tag the experiment as model training and give it the model-choice view of its runs."""
    import json
    import time

    exp = client.get_experiment(experiment_id)
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    state = json.dumps(model_choice_view())
    old = exp.tags.get(VIEW_TAG)
    if old is None or json.loads(old).get("state") != state:
        now = int(time.time() * 1000)
        client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(
            {"name": "model choice (exported models, best val first)", "createdAt": now, "updatedAt": now,
             "state": state}))


SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def log_split_inputs(prepared_dir: str | Path, raw_dir: str | Path | None = None) -> None:
    """Log the prepared splits as dataset inputs of the active run (fills the UI's Dataset column).

    Each input names the parquet file (source), its sha256 (the digest holds the first 16 hex
    digits, MLflow's limit is 36 characters; the tag ``sha256`` the whole one), its row count and
    where the corpus came from (``data/raw/source.json``).
    """
    import json

    import mlflow
    import pandas as pd

    from newsrnn.fileio import sha256_file

    prepared_dir = Path(prepared_dir)
    raw_dir = Path(raw_dir) if raw_dir is not None else prepared_dir.parent / "raw"
    origin = "unknown"
    if (raw_dir / "source.json").exists():
        info = json.loads((raw_dir / "source.json").read_text())
        origin = str(info.get("source") or info.get("name") or "unknown")[:250]
    for split, context in SPLIT_CONTEXTS.items():
        path = prepared_dir / f"{split}.parquet"
        if not path.exists():
            continue
        sha = sha256_file(path)
        df = pd.read_parquet(path)
        with warnings.catch_warnings():
            # MLflow registers its local-file source under two schemes and says so for every path;
            # its integer-column hint is about model signatures, not logged datasets.
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(df, source=str(path.resolve()), name=f"ag_news-{split}", targets="label",
                                         digest=sha[:16])
            mlflow.log_input(ds, context=context, tags={"sha256": sha, "rows": str(len(df)), "origin": origin})


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


def set_experiment(name: str) -> Any:
    """``mlflow.set_experiment`` without its side effect on ``MLFLOW_EXPERIMENT_ID``.

    MLflow exports the id so that subprocesses inherit it; a later ``mlflow run`` or stage
    started from this process against another store would then look for that id there.
    """
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        # MLflow would put a SQLite store's artifacts in ./mlruns of whatever directory the process
        # runs in; beside the database file they stay with the store they belong to.
        where = Path(uri[len("sqlite:///"):].split("?")[0]).resolve().parent / "mlruns" / name
        try:
            mlflow.MlflowClient().create_experiment(name, artifact_location=where.as_uri())
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a parallel stage: set_experiment below finds it
    before = os.environ.get("MLFLOW_EXPERIMENT_ID")
    try:
        return mlflow.set_experiment(name)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = before


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
            run_tags = tags
            if run_id is None:
                exp = set_experiment(self.experiment)
                mark_training_experiment(mlflow.MlflowClient(), exp.experiment_id)
                run_tags = {**lineage_tags(), **(tags or {})}
            kwargs: dict[str, Any] = {"run_id": run_id} if run_id else {"run_name": run_name}
            if parent_run_id:
                kwargs["parent_run_id"] = parent_run_id
                kwargs["nested"] = True
            run = mlflow.start_run(**kwargs, tags=run_tags)
            return run.info.run_id

        self.run_id = self._call("start_run", _start)
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log flat params (strings up to MLflow's limit)."""
        self._call("log_params", lambda: self._mlflow.log_params(
            {k: str(v)[:500] for k, v in params.items()}))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics; with a ``step`` they are a curve and go under ``epoch/<key>``.

        The plain key is kept for the exported model's value: the UI shows a metric's latest
        step in the runs table, so a curve under the same key would hide it.
        """
        if step is not None:
            metrics = {k if k.startswith(EPOCH_PREFIX) else f"{EPOCH_PREFIX}{k}": v for k, v in metrics.items()}
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
