"""Optuna tuning for real: SQLite, journal file and PostgreSQL storages; MLflow parent/child runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from support import postgres_url, small_params

from newsrnn.config import config_from_dict
from newsrnn.tune import create_study, finalize, run_worker, tune

HELPERS = Path(__file__).resolve().parents[1] / "tune_helpers.py"


def _cfg(root: Path, **over: object):  # noqa: ANN202
    return config_from_dict(small_params(**{"mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}", **over}))


@pytest.mark.slow
def test_tiny_study_feeds_training_and_logs_runs(prepared: dict[str, Path]) -> None:
    root = prepared["root"]
    cfg = _cfg(root, **{"tune.n_trials": 3, "tune.max_train_rows": 200})
    out = root / "tuned" / "gru.yaml"
    result = tune(cfg, "gru", storage=f"sqlite:///{root / 'optuna.db'}", prepared_dir=prepared["prepared"],
                  vec_dir=prepared["vec"], out_path=out, plots_dir=root / "tuned" / "plots", data_sha="x")
    tuned = yaml.safe_load(out.read_text())
    assert tuned["n_trials"] == 3 and tuned["best_value"] is not None
    assert set(tuned["params"]) == {"batch_size", "embed_dim", "units", "learning_rate", "dropout"}
    assert tuned["params"]["embed_dim"] in (8, 16) and tuned == result | {"storage": tuned["storage"]}
    assert (root / "tuned" / "plots" / "optimization_history.png").exists()
    # The architecture's own params are always trial 0, so tuning can only match or beat them.
    trial0 = optuna.load_study(study_name=tuned["study"], storage=f"sqlite:///{root / 'optuna.db'}").trials[0]
    assert trial0.user_attrs["defaults"] is True
    assert trial0.params["units"] == cfg.arch("gru").units and trial0.params["batch_size"] == 32

    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("newsrnn").experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["trial_state"] for c in children} <= {"COMPLETE", "PRUNED", "FAIL"}
    assert all("learning_rate" in c.data.params for c in children)

    # train@gru uses the tuned values.
    from newsrnn.train import train

    res = train(cfg, "gru", prepared_dir=prepared["prepared"], vec_dir=prepared["vec"], tuned_path=out,
                out_dir=root / "models" / "gru", checkpoint_dir=root / "ckpt")
    import json

    summary = json.loads((root / "models" / "gru" / "train.json").read_text())
    assert summary["params"]["units"] == tuned["params"]["units"]
    assert summary["batch_size"] == tuned["params"]["batch_size"]
    assert res.run_id is not None


def test_two_journal_workers_make_exactly_n_trials(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 's.journal'}"
    name = "two-workers"
    cfg = _cfg(tmp_path, **{"tune.n_trials": 6})
    create_study(cfg, name, url)
    procs = [subprocess.Popen([sys.executable, str(HELPERS), url, name, "quick", "3"], cwd=tmp_path)
             for _ in range(2)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    trials = create_study(cfg, name, url).get_trials()
    assert len(trials) == 6
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_failing_and_nan_trials_are_failed_and_study_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    cfg = _cfg(tmp_path, **{"tune.n_trials": 4})
    import tune_helpers

    ran = run_worker(cfg, "gru", url, "flaky", 4, objective=tune_helpers.flaky)
    assert ran == 4
    trials = create_study(cfg, "flaky", url).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    result = finalize(cfg, "gru", url, "flaky", tmp_path / "t.yaml", tmp_path / "plots")
    assert result["best_trial"] in (2, 3) and result["states"] == {"COMPLETE": 2, "FAIL": 2}


@pytest.mark.postgres
def test_postgres_workers_share_study_and_killed_trial_is_retried(tmp_path: Path) -> None:
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"pg-{uuid.uuid4().hex[:8]}"
    cfg = _cfg(tmp_path, **{"tune.n_trials": 3})
    study = create_study(cfg, name, url)
    study.set_user_attr("slow_seconds", 120)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen([sys.executable, str(HELPERS), url, name, "slow", "2"], cwd=tmp_path, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        if any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials()):
            break
        time.sleep(0.5)
    else:
        victim.kill()
        pytest.fail("worker never started a trial")
    time.sleep(2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(16)  # past the heartbeat grace period
    helper = subprocess.run([sys.executable, str(HELPERS), url, name, "slow", "2"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert helper.returncode == 0, helper.stderr[-2000:]
    trials = create_study(cfg, name, url).get_trials()
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert len({t.number for t in trials}) == len(trials)
