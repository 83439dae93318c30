"""A cluster rehearsal: the whole Kubeflow pipeline with the cluster's configuration, on this machine.

kfp's local runner runs every task as its own process; nothing passes between tasks but kfp
artifacts, and every service a cluster would provide runs here for real:

- an MLflow tracking server on 127.0.0.1 (PostgreSQL backend store, artifacts proxied by the
  server into an S3 bucket), started by the test;
- Optuna on PostgreSQL, two tuning workers per architecture on one study;
- the data read by git repo + revision from a DVC remote on an S3-compatible server
  (``moto_server``) on 127.0.0.1;
- credentials and server URLs only as environment variables, as the Kubernetes secrets give them,
  and ``NEWSRNN_CLUSTER=1`` so the tasks apply the cluster's rules (no local fallbacks).

Afterwards: the champion is in the server's registry, every run and trial is in PostgreSQL, the
revision asked for is the one trained on, and no ``mlflow.db``, ``mlruns/`` or Optuna file was
written anywhere (the working directory, the temp dir the tasks used, the repo).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import ROOT, postgres_url, small_params
from synthetic import write_corpus

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BIN = Path(sys.executable).parent
BUCKET = "newsrnn-rehearsal"
ARCHS = ["gru", "wide"]
N_TRIALS = 2
CREDS = {"AWS_ACCESS_KEY_ID": "rehearsal-key", "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
         "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer on port {port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def databases() -> Iterator[dict[str, str]]:
    """Two fresh PostgreSQL databases (MLflow's store, Optuna's), dropped afterwards."""
    if postgres_url() is None:
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    import psycopg2

    tag = uuid.uuid4().hex[:10]
    names = {"mlflow": f"newsrnn_rehearsal_mlflow_{tag}", "optuna": f"newsrnn_rehearsal_optuna_{tag}"}
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in names.values():
                cur.execute(f'CREATE DATABASE "{name}"')
        yield names
    finally:
        with conn.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 with one bucket; yields its endpoint URL."""
    import boto3

    port = _free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_for(port, proc, "moto_server")
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
                     region_name=CREDS["AWS_DEFAULT_REGION"]).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def mlflow_server(tmp_path: Path, databases: dict[str, str], s3: str) -> Iterator[str]:
    """``mlflow server`` on PostgreSQL, artifacts proxied into the S3 bucket; yields its URL."""
    port = _free_port()
    env = {**os.environ, **CREDS, "MLFLOW_S3_ENDPOINT_URL": s3}
    env.pop("MLFLOW_TRACKING_URI", None)
    (tmp_path / "server").mkdir()
    log = open(tmp_path / "mlflow-server.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"postgresql+psycopg2://postgres@127.0.0.1:5432/{databases['mlflow']}",
         "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path / "server")
    try:
        _wait_for(port, proc, "mlflow server", timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"{cmd}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out.stdout


@pytest.fixture
def data_repo(tmp_path: Path, s3: str) -> tuple[Path, dict[str, str]]:
    """A git repo whose data/raw is DVC-tracked on the S3 remote, at tags v1 and v2 (v2 = HEAD).

    Returns the repo and each tag's data sha256. The local DVC cache and data are deleted, so a
    read must go to the remote.
    """
    from newsrnn.config import config_from_dict
    from newsrnn.fetch import data_sha256, fetch

    repo = tmp_path / "data-repo"
    repo.mkdir()
    env = {**os.environ, **CREDS}
    dvc = str(BIN / "dvc")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "test"], [dvc, "init", "-q"],
                [dvc, "remote", "add", "-d", "store", f"s3://{BUCKET}/dvc"],
                [dvc, "remote", "modify", "store", "endpointurl", s3]):
        _run(cmd, repo, env)
    shas = {}
    for tag, (n_train, seed) in (("v1", (240, 0)), ("v2", (320, 9))):
        corpus = write_corpus(tmp_path / f"corpus_{tag}", n_train, 80, seed=seed)
        cfg = config_from_dict(small_params(**{"data.sources": ["local"], "data.local_dir": str(corpus)}))
        fetch(cfg.data, repo / "data" / "raw", tmp_path / "download")
        shas[tag] = data_sha256(repo / "data" / "raw")
        for cmd in ([dvc, "add", "-q", "data/raw"], [dvc, "push", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", f"data {tag}"], ["git", "tag", tag]):
            _run(cmd, repo, env)
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "raw")
    return repo, shas


def _local_stores(*roots: Path) -> list[Path]:
    """Files and dirs a laptop fallback would leave: MLflow's SQLite/file store, Optuna's files.

    Virtual environments and git's own files are not searched (packages ship .db files).
    """
    found = []
    for root in roots:
        for parent, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in (".venv", "venv", ".git", "node_modules")]
            for name in dirs + files:
                if name in ("mlflow.db", "mlruns", "mlartifacts", "optuna") or name.endswith((".journal", ".db")):
                    found.append(Path(parent) / name)
    return found


def test_cluster_rehearsal(tmp_path: Path, databases: dict[str, str], s3: str, mlflow_server: str,
                           data_repo: tuple[Path, dict[str, str]]) -> None:
    import mlflow
    import psycopg2

    repo, shas = data_repo
    work, tasks_tmp = tmp_path / "work", tmp_path / "task-tmp"
    work.mkdir()
    tasks_tmp.mkdir()
    # params.yaml as a user has it: mlflow.tracking_uri is still the laptop's sqlite:///mlflow.db,
    # which the cluster must not fall back to. data.sources would download; the DVC repo wins.
    # No pruning: every trial of the budget completes, so each shows up in PostgreSQL as COMPLETE.
    params = small_params(**{"models": ARCHS, "tune.n_trials": N_TRIALS, "kfp.tune_workers": 2,
                             "tune.max_train_rows": None, "tune.pruning": False})
    assert params["mlflow"]["tracking_uri"].startswith("sqlite:")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    optuna_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{databases['optuna']}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "NEWSRNN_OPTUNA_STORAGE", "NEWSRNN_DATA_DIR")}
    # What the pods get from the secrets newsrnn-mlflow, newsrnn-optuna and newsrnn-data.
    env.update({**CREDS, "MLFLOW_TRACKING_URI": mlflow_server, "NEWSRNN_OPTUNA_STORAGE": optuna_url,
                "NEWSRNN_CLUSTER": "1", "TMPDIR": str(tasks_tmp)})
    repo_stores_before = set(_local_stores(ROOT))

    started = time.monotonic()
    out = subprocess.run([str(BIN / "newsrnn"), "kfp", "run-local", "--pipeline-root", str(tmp_path / "kfp-root"),
                          "--arg", f"dvc_repo={repo}", "--arg", "dvc_rev=v1"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    log = out.stdout + out.stderr
    (tmp_path / "run-local.log").write_text(log)
    assert out.returncode == 0, log[-6000:]
    print(f"rehearsal pipeline: {time.monotonic() - started:.0f} s")

    # The champion is in the server's registry.
    client = mlflow.MlflowClient(mlflow_server)
    champion = client.get_model_version_by_alias("agnews-rnn", "champion")
    assert champion.tags["arch"] in ARCHS
    exp = client.get_experiment_by_name("newsrnn")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    names = sorted(r.info.run_name for r in runs)
    train_runs = [r for r in runs if r.data.tags.get("stage") == "train"]
    assert sorted(r.data.tags["arch"] for r in train_runs) == sorted(ARCHS), names
    assert all("val_accuracy" in r.data.metrics for r in train_runs), "evaluate did not log to the train runs"
    assert sum(n.startswith("trial-") for n in names) == N_TRIALS * len(ARCHS), names
    # ... and every one of them is a row in the server's PostgreSQL store.
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=databases["mlflow"]) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active'")
        assert {r[0] for r in cur.fetchall()} >= {r.info.run_id for r in runs}
        cur.execute("SELECT name, version FROM model_versions")
        assert ("agnews-rnn", int(champion.version)) in set(cur.fetchall())
        cur.execute("SELECT artifact_location FROM experiments WHERE name = 'newsrnn'")
        assert cur.fetchone()[0].startswith("mlflow-artifacts:"), "artifacts did not go through the server"

    # Every trial in Optuna's PostgreSQL database: one study per architecture, the whole budget,
    # run by two workers.
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=databases["optuna"]) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT s.study_name, count(*) FROM trials t JOIN studies s USING (study_id) "
                    "WHERE t.state = 'COMPLETE' GROUP BY s.study_name")
        per_study = dict(cur.fetchall())
    assert sorted(n.split("-")[1] for n in per_study) == sorted(ARCHS), per_study
    assert all(n >= N_TRIALS for n in per_study.values()), per_study
    assert log.count("worker 1 ran 1 trial(s)") == len(ARCHS), "expected two workers per study"

    # The revision asked for (v1), not the repo's HEAD (v2), is what was trained on.
    assert shas["v1"] != shas["v2"]
    assert {r.data.tags.get("data_sha256") for r in train_runs} == {shas["v1"]}

    # No laptop store anywhere: the working dir, the tasks' temp dir, the pipeline root, the repo.
    stray = _local_stores(work, tasks_tmp, tmp_path / "kfp-root", repo)
    stray += [p for p in _local_stores(ROOT) if p not in repo_stores_before]
    assert not stray, f"local stores written: {stray}"
