"""Reliability, faults (cases 6-12): killed, interrupted and disconnected runs lose nothing,
corrupted artifacts are refused, parallel tuning stays exact and memory stays flat."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from rel_support import (
    BIN,
    TRAIN_DEFAULTS,
    base_env,
    free_port,
    make_project,
    newsrnn,
    run,
    small_params,
    stop_group,
    write_corpus,
)

from newsrnn.fileio import read_metrics

CKPT_STATE = Path("artifacts/checkpoints/rnn_title/state.json")


def _wait_for(pred, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:  # noqa: ANN001
    """Poll ``pred`` every 20 ms; fail if ``proc`` ends first or on timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _state_epoch(project: Path) -> int | None:
    try:
        return json.loads((project / CKPT_STATE).read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def _default_sigint() -> None:
    # A runner started in the background (`cmd &` without job control) ignores SIGINT, and the
    # children inherit that; Ctrl-C must reach dvc and newsrnn as it does in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env or base_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


RESUME = {"train.epochs": 3, "train.deterministic": True, "train.early_stopping_patience": 10,
          "train.batch_size": 4}


@pytest.mark.slow
def test_case06_kill9_in_epoch2_resumes_bit_for_bit(trained, tmp_path: Path) -> None:
    """SIGKILL during epoch 2 of 3, same command again: resumes after epoch 1 and ends with exactly the
    weights and history of an uninterrupted run; no model.keras at the final path meanwhile."""
    ref = trained.copy_to(tmp_path / "ref", **RESUME)
    killed = trained.copy_to(tmp_path / "killed", **RESUME)
    ref_proc = _popen(newsrnn("train", "rnn_title"), ref)
    proc = _popen(newsrnn("train", "rnn_title"), killed)
    try:
        _wait_for(lambda: _state_epoch(killed) == 0, 300, proc, "epoch 1's checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_group(proc)
    assert proc.returncode == -signal.SIGKILL
    assert _state_epoch(killed) == 0, "the kill landed after epoch 2 finished; epochs are too short"
    model_dir = killed / "artifacts" / "models" / "rnn_title"
    assert not (model_dir / "model.keras").exists()
    assert not model_dir.exists() or not any(model_dir.iterdir())

    resumed = run(newsrnn("train", "rnn_title"), killed, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming after epoch 1" in resumed.stdout
    assert "epoch 1/3" not in resumed.stdout and "epoch 3/3" in resumed.stdout
    ref_out, _ = ref_proc.communicate(timeout=600)
    assert ref_proc.returncode == 0, ref_out

    def hist(p: Path) -> list[dict]:
        rows = json.loads((p / "artifacts/models/rnn_title/history.json").read_text())
        return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]

    assert len(hist(ref)) == 3
    assert hist(killed) == hist(ref)
    from newsrnn.modelio import load_text_model

    w_ref = load_text_model(ref / "artifacts/models/rnn_title").get_weights()
    w_res = load_text_model(model_dir).get_weights()
    assert len(w_ref) == len(w_res)
    for a, b in zip(w_ref, w_res, strict=True):
        assert np.array_equal(a, b)
    assert not (killed / "artifacts/checkpoints/rnn_title").exists()


def _dvc_project(tmp_path: Path, corpus: Path, **overrides: object) -> Path:
    params = small_params(**{"data.sources": ["local"], "models": ["rnn_title"], "mlflow.enabled": False,
                             **TRAIN_DEFAULTS, **overrides})
    return make_project(tmp_path / "proj", params, corpus)


def _dvc_env(corpus: Path) -> dict[str, str]:
    return base_env(NEWSRNN_DATA_DIR=str(corpus), MLFLOW_TRACKING_URI="sqlite:///mlflow.db")


def _lock_stages(project: Path) -> set[str]:
    lock = project / "dvc.lock"
    return set(yaml.safe_load(lock.read_text())["stages"]) if lock.exists() else set()


@pytest.mark.slow
def test_case07_sigint_during_dvc_repro_keeps_lock_clean(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) while train runs under ``dvc repro``: dvc.lock has no entry
    for train, no model is left; the next ``dvc repro`` completes and records it."""
    corpus = write_corpus(tmp_path / "csv", 400, 120)
    # Many short epochs: training must still be running when the first checkpoint appears, however
    # fast the machine (three epochs of this tiny corpus can finish before the signal lands).
    proj = _dvc_project(tmp_path, corpus, **{**RESUME, "train.deterministic": False, "train.epochs": 40,
                                             "train.early_stopping_patience": 100})
    env = _dvc_env(corpus)
    proc = _popen([str(BIN / "dvc"), "repro", "train@rnn_title"], proj, env)
    try:
        _wait_for(lambda: _state_epoch(proj) is not None, 400, proc, "train's first epoch")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        stop_group(proc)
    assert proc.returncode != 0, out
    stages = _lock_stages(proj)
    assert "vectorize" in stages, out  # completed stages are recorded ...
    assert "train@rnn_title" not in stages, out  # ... the interrupted one is not
    assert not (proj / "artifacts/models/rnn_title/model.keras").exists()

    again = run([str(BIN / "dvc"), "repro", "train@rnn_title"], proj, env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "train@rnn_title" in _lock_stages(proj)
    assert (proj / "artifacts/models/rnn_title/model.keras").exists()
    status = run([str(BIN / "dvc"), "status", "train@rnn_title"], proj, env, check=True)
    assert "changed" not in status.stdout, status.stdout


@pytest.mark.slow
def test_case08_run_cache_restores_without_training(tmp_path: Path) -> None:
    """Delete outputs and dvc.lock: ``dvc repro`` restores train's output from the run-cache. Proof that
    training did not run: DVC says so, and model.keras is byte-identical (a retrain writes a new
    timestamp into the archive, so its sha256 would differ) with the same train.json."""
    from newsrnn.fileio import sha256_file

    corpus = write_corpus(tmp_path / "csv", 400, 120)
    proj = _dvc_project(tmp_path, corpus)
    env = _dvc_env(corpus)
    dvc = str(BIN / "dvc")
    run([dvc, "repro", "train@rnn_title"], proj, env, timeout=600, check=True)
    model = proj / "artifacts/models/rnn_title"
    sha, summary = sha256_file(model / "model.keras"), (model / "train.json").read_text()
    for d in ("data", "artifacts", "metrics", "plots"):
        shutil.rmtree(proj / d, ignore_errors=True)
    (proj / "dvc.lock").unlink()

    again = run([dvc, "repro", "train@rnn_title"], proj, env, timeout=600, check=True)
    out = again.stdout + again.stderr
    assert "Stage 'train@rnn_title' is cached - skipping run" in out, out
    assert "epoch 1/1" not in out
    assert sha256_file(model / "model.keras") == sha
    assert (model / "train.json").read_text() == summary
    assert "train@rnn_title" in _lock_stages(proj)


def test_case09_corrupted_model_and_vectorizer_refused(trained, tmp_path: Path) -> None:
    """The sha256 recorded at write time is checked: truncated, altered or unverifiable files are refused
    with a message naming the file; the intact copy loads."""
    from newsrnn.errors import ArtifactError
    from newsrnn.fileio import sha256_file
    from newsrnn.modelio import load_text_model
    from newsrnn.vectorize import load_vectorizer_spec

    src = trained.model_dir
    assert (src / "model.sha256").read_text().strip() == sha256_file(src / "model.keras")
    load_text_model(src)  # control: the intact model loads

    cases = {}
    for name in ("truncated", "flipped", "nodigest", "rehashed"):
        d = tmp_path / name
        shutil.copytree(src, d)
        cases[name] = d
    data = (src / "model.keras").read_bytes()
    (cases["truncated"] / "model.keras").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (cases["flipped"] / "model.keras").write_bytes(bytes(flipped))
    (cases["nodigest"] / "model.sha256").unlink()
    (cases["rehashed"] / "model.keras").write_bytes(data[: len(data) // 2])  # digest matches a broken file
    (cases["rehashed"] / "model.sha256").write_text(sha256_file(cases["rehashed"] / "model.keras") + "\n")

    for name in ("truncated", "flipped"):
        with pytest.raises(ArtifactError, match="does not match the recorded") as err:
            load_text_model(cases[name])
        assert str(cases[name] / "model.keras") in str(err.value)
    with pytest.raises(ArtifactError, match="model.sha256: missing"):
        load_text_model(cases["nodigest"])
    with pytest.raises(ArtifactError, match="(not a valid .keras model|refused to load)") as err:
        load_text_model(cases["rehashed"])
    assert str(cases["rehashed"] / "model.keras") in str(err.value)

    proc = run(newsrnn("predict", "--model", str(cases["truncated"]), "Stocks rally"), trained.root)
    assert proc.returncode == 2 and "does not match the recorded" in proc.stderr
    assert "Traceback" not in proc.stderr

    vec = tmp_path / "vec"
    shutil.copytree(trained.root / "artifacts/vectorizer", vec)
    load_vectorizer_spec(vec)  # control
    vocab = (vec / "vocab.txt").read_bytes()
    (vec / "vocab.txt").write_bytes(vocab[: len(vocab) // 2])
    with pytest.raises(ArtifactError, match="vocab.txt: sha256 .* does not match"):
        load_vectorizer_spec(vec)
    (vec / "vocab.txt").write_bytes(vocab.replace(b"\n", b"\nzzz\n", 1))
    with pytest.raises(ArtifactError, match="truncated or altered"):
        load_vectorizer_spec(vec)


@pytest.mark.slow
def test_case10_four_workers_journal_exact_trials(trained, tmp_path: Path) -> None:
    """Four worker processes on one journal-file study: exactly n_trials trials, numbers 0..n-1 once
    each, all finished, and no 'database is locked' anywhere."""
    import optuna

    n = 8
    proj = trained.copy_to(tmp_path / "p", **{"tune.n_trials": n, "tune.pruning": False,
                                              "tune.max_train_rows": 200})
    proc = run(newsrnn("tune", "rnn_title", "--workers", "4"), proj, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "database is locked" not in out.lower()
    assert "on 4 worker(s)" in out
    tuned = yaml.safe_load((proj / "artifacts/tuned/rnn_title.yaml").read_text())
    journal = proj / "optuna" / "rnn_title.journal"
    assert journal.exists()
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=tuned["study"],
                              storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert tuned["n_trials"] == n and tuned["states"] == {"COMPLETE": n}


@pytest.mark.slow
@pytest.mark.postgres
def test_case10_killed_worker_trial_retried_once_postgres(trained, tmp_path: Path, pg_url: str) -> None:
    """kill -9 of a worker mid-trial on PostgreSQL: the study stays usable, the next worker marks the
    stale trial FAIL (heartbeat) and retries it exactly once; the budget is then completed."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from newsrnn.tune import GRACE_S

    seed = int(uuid.uuid4().int % 1_000_000)  # a study of its own in the shared database
    proj = trained.copy_to(tmp_path / "p", **{"seed": seed, "tune.n_trials": 2, "tune.pruning": False,
                                              "tune.epochs_per_trial": 6, "train.batch_size": 4,
                                              "tune.batch_size": [4]})
    proc = _popen(newsrnn("tune", "rnn_title", "--storage", pg_url), proj)
    name = None
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if "study newsrnn-" in line:
                name = line.split("study ", 1)[1].split(" ", 1)[0]
                break
            assert time.monotonic() < deadline
        assert name, "tune never printed its study name"
        storage = optuna.storages.RDBStorage(pg_url)
        for line in proc.stdout:  # the first epoch of the first trial is done: the trial is mid-way
            if line.startswith("epoch 1/"):
                break
            assert time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_group(proc)
    try:
        study = optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(pg_url))
        running = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
        assert len(running) == 1, (f"expected the killed trial RUNNING in {name}; trials: "
                                   f"{[(t.number, t.state.name) for t in study.get_trials()]}")
        killed = running[0]
        time.sleep(GRACE_S + 2)  # heartbeat now stale
        again = run(newsrnn("tune", "rnn_title", "--storage", pg_url), proj, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        states = {t.number: t.state for t in trials}
        assert states[killed.number] == optuna.trial.TrialState.FAIL
        retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
        assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
        assert retries[0].state == optuna.trial.TrialState.COMPLETE
        assert retries[0].params == killed.params
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 2 and len(trials) == 3
    finally:
        optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_case11_mlflow_down_training_completes_register_later_once(trained, tmp_path: Path) -> None:
    """Tracking server unreachable: train and evaluate still write their outputs, with a warning; later,
    with the registry back, ``register`` logs and registers the model once, and a re-run reuses it."""
    proj = trained.copy_to(tmp_path / "p", **{"mlflow.enabled": True})
    down = base_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    t = run(newsrnn("train", "rnn_title"), proj, down, timeout=600)
    assert t.returncode == 0, t.stdout + t.stderr
    assert "WARNING: MLflow" in t.stdout and "continuing without tracking" in t.stdout
    assert (proj / "artifacts/models/rnn_title/model.keras").exists()
    e = run(newsrnn("evaluate", "rnn_title"), proj, down, timeout=600)
    assert e.returncode == 0, e.stdout + e.stderr
    metrics = read_metrics(proj / "metrics/rnn_title.json")  # scores + the run record
    assert metrics["run_id"] is None and metrics.get("model_uri") is None

    up = base_env(MLFLOW_TRACKING_URI=f"sqlite:///{proj / 'registry.db'}")
    first = run(newsrnn("register"), proj, up, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    r1 = json.loads((proj / "artifacts/champion.json").read_text())
    second = run(newsrnn("register"), proj, up, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    r2 = json.loads((proj / "artifacts/champion.json").read_text())
    assert (r1["created"], r2["created"]) == (True, False)
    assert r1["version"] == r2["version"] == 1
    from mlflow import MlflowClient

    versions = MlflowClient(up["MLFLOW_TRACKING_URI"]).search_model_versions(f"name='{r1['name']}'")
    assert len(versions) == 1
    assert versions[0].tags["model_sha256"] == metrics["model_sha256"]


MEMORY_SCRIPT = """
import json, psutil
from pathlib import Path
from newsrnn.config import load_config
from newsrnn.tune import Objective, create_study
cfg = load_config("params.yaml")
study = create_study(cfg, "memory", "sqlite:///memory.db")
objective = Objective(cfg, "rnn_title", Path("data/prepared"), Path("artifacts/vectorizer"))
rss = []
study.optimize(objective, n_trials=20, gc_after_trial=True,
               callbacks=[lambda s, t: rss.append(psutil.Process().memory_info().rss)])
states = [t.state.name for t in study.get_trials()]
print("RESULT=" + json.dumps({"rss": rss, "states": states}))
"""


@pytest.mark.slow
def test_case12_memory_flat_over_20_trials(trained, tmp_path: Path) -> None:
    """20 tuning trials in one process: resident memory after trial 20 is within 60 MB of trial 5
    (sessions are cleared between trials; a leak of a model per trial grows far faster)."""
    proj = trained.copy_to(tmp_path / "p", **{"tune.pruning": False, "tune.max_train_rows": 100,
                                              "train.max_steps_per_epoch": 3})
    proc = run([sys.executable, "-c", MEMORY_SCRIPT], proj, timeout=900, check=True)
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT="))[7:])
    mb = [r / 2**20 for r in result["rss"]]
    assert result["states"] == ["COMPLETE"] * 20
    growth = mb[-1] - mb[4]
    print(f"RSS MB after each trial: {[round(x) for x in mb]}; growth 5->20: {growth:.1f} MB")
    assert growth < 60, f"RSS grew {growth:.1f} MB over trials 5-20: {[round(x) for x in mb]}"
