"""Shared test helpers (importable as ``support``; fixtures live in conftest.py).

Kept out of conftest.py because several conftest modules exist (tests/, tests/reliability/) and
``from support import ...`` would pick whichever was imported first.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# .ci/run exports NEWSRNN_DATA_DIR when the real corpus is present; tests read it from here only
# (the variable itself is removed for every test, so fetch never picks it up by accident).
REAL_DATA = Path(os.environ.get("NEWSRNN_DATA_DIR") or ROOT.parent / "shared" / "data" / "ag_news_csv")
# Read once, then removed for the whole session (session- and module-scoped fixtures included):
# a test must never fetch the real corpus, log to the caller's server or join its Optuna study
# by accident. Tests that want the real corpus use REAL_DATA explicitly.
for _var in ("NEWSRNN_DATA_DIR", "MLFLOW_TRACKING_URI", "NEWSRNN_OPTUNA_STORAGE"):
    os.environ.pop(_var, None)
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# dvc, newsrnn and mlflow are console scripts of the interpreter running the tests.
BIN = str(Path(sys.executable).parent)
if BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = BIN + os.pathsep + os.environ.get("PATH", "")


def small_params(**overrides: object) -> dict:
    """params.yaml shrunk for tests: tiny vocab and networks, 1 epoch."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["vectorizer"]["max_tokens"] = 500
    p["vectorizer"]["max_length"] = 32
    p["vectorizer"]["pretrain_dim"] = 16
    p["train"]["epochs"] = 1
    p["train"]["batch_size"] = 32
    for arch in p["architectures"].values():
        arch["embed_dim"] = 8
        arch["units"] = 4
        if arch.get("ngram_buckets"):
            arch["ngram_buckets"] = 1000
        if arch.get("char_ngram_dim"):
            arch["char_ngram_buckets"] = 1000
        arch.pop("tune_trials", None)  # tests set one budget for all: tune.n_trials
    p["tune"]["batch_size"] = [16, 32]
    p["tune"]["embed_dim"] = [8, 16]
    p["tune"]["units"] = [4, 8]
    p["tune"]["epochs_per_trial"] = 1
    p["tune"]["n_trials"] = 0
    p["tune"]["max_train_rows"] = None
    p["tune"]["min_val_gain"] = 0.0  # tiny models: any gain counts (tests of the margin set their own)
    # Models of the synthetic corpus have never seen a real headline; the promotion tests set
    # their own golden examples. A roomy budget: tests share 2 cores with other work.
    p["promote"]["golden"] = []
    p["promote"]["latency_budget_ms"] = 1000.0
    if "models" in overrides and "ensemble" not in overrides:
        p["ensemble"] = []  # the default members may not all be in a trimmed model list
    for dotted, value in overrides.items():
        node = p
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return p


def make_project(path: Path, params: dict, data_dir: Path) -> Path:
    """A git + DVC repo with this project's pipeline files and the given params."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", path / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", path / ".gitignore")
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "NEWSRNN_DATA_DIR": str(data_dir)}
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "test"], ["dvc", "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=path, check=True, env=env)
    return path


def postgres_url() -> str | None:
    """PostgreSQL URL if a server answers on 127.0.0.1:5432, else None."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return None
    try:
        import psycopg2

        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test").close()
    except Exception:
        return None
    return "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
