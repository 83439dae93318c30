"""Helpers for the reliability suite: run the real ``newsrnn`` / ``dvc`` commands, copy the shared
tiny project, and reach the root test helpers (synthetic corpus, small params, DVC projects)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
BIN = Path(sys.executable).parent


sys.path.insert(0, str(TESTS))
from support import make_project, postgres_url, small_params  # noqa: E402,F401
from synthetic import write_corpus  # noqa: E402,F401


def base_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: no telemetry, quiet TF, the venv's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "NEWSRNN_OPTUNA_STORAGE", "NEWSRNN_DATA_DIR")}
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               OMP_NUM_THREADS="2")
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
        check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a real command, capturing text output; ``check`` fails the test with the output shown."""
    proc = subprocess.run(cmd, cwd=cwd, env=env or base_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                    f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def newsrnn(*args: str) -> list[str]:
    """argv for the installed ``newsrnn`` console script."""
    return [str(BIN / "newsrnn"), *args]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_params(project: Path, params: dict) -> None:
    """Write params.yaml into ``project``."""
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@dataclass
class Trained:
    """A project directory with fetched, prepared, vectorized data and a trained ``rnn_title``."""

    root: Path
    params: dict
    corpus: Path

    @property
    def model_dir(self) -> Path:
        """artifacts/models/rnn_title."""
        return self.root / "artifacts" / "models" / "rnn_title"

    def copy_to(self, dest: Path, with_model: bool = False, **overrides: object) -> Path:
        """A fresh project with the same data (and optionally the model), params with overrides."""
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.root / "data", dest / "data")
        shutil.copytree(self.root / "artifacts" / "vectorizer", dest / "artifacts" / "vectorizer")
        if with_model:
            shutil.copytree(self.model_dir, dest / "artifacts" / "models" / "rnn_title")
        params = small_params(**{**self.base_overrides(), **overrides})
        write_params(dest, params)
        return dest

    def base_overrides(self) -> dict[str, object]:
        """The overrides every copy starts from (local source, one architecture, no MLflow)."""
        return {"data.sources": ["local"], "data.local_dir": str(self.corpus), "models": ["rnn_title"],
                "mlflow.enabled": False, "mlflow.tracking_uri": "sqlite:///mlflow.db", **TRAIN_DEFAULTS}


# The architecture's own batch size / learning rate would override the train.* values tests set.
TRAIN_DEFAULTS = {"architectures.rnn_title.batch_size": None, "architectures.rnn_title.learning_rate": None}


LOG_MODEL = """
import sys, mlflow
from newsrnn.serving import log_pyfunc_model
mlflow.set_experiment("serve-test")
with mlflow.start_run():
    print("MODEL_URI=" + log_pyfunc_model(sys.argv[1]))
"""


def log_model(model_dir: Path, tracking_uri: str, cwd: Path) -> str:
    """Log ``model_dir`` as the project's pyfunc model in a child process; return its model URI."""
    proc = run([sys.executable, "-c", LOG_MODEL, str(model_dir)], cwd,
               env=base_env(MLFLOW_TRACKING_URI=tracking_uri), check=True)
    return next(ln.split("=", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("MODEL_URI="))


@contextlib.contextmanager
def serve_logged_model(trained: Trained, tmp: Path, port: int) -> Iterator[str]:
    """Log the trained model, run ``mlflow models serve`` on it (local env) and yield its base URL."""
    import requests

    tracking = f"sqlite:///{tmp / 'serve.db'}"
    uri = log_model(trained.model_dir, tracking, tmp)
    log = open(tmp / "serve.log", "wb")  # closed below, after the server stops
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                            cwd=tmp, env=base_env(MLFLOW_TRACKING_URI=tracking), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited {proc.returncode}:\n"
                            f"{(tmp / 'serve.log').read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow models serve did not answer /ping within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)
        log.close()


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it spawned."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
