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
    assert tuned == result | {"storage": tuned["storage"]}
    # Either a trial beat trial 0 (the defaults) and its whole point is used, or none did and the
    # file says the defaults are kept.
    if tuned["kept_defaults"]:
        assert tuned["params"] == {} and tuned["best_value"] == tuned["defaults_value"]
        assert tuned["note"].startswith("defaults kept")
    else:
        assert set(tuned["params"]) == {"batch_size", "embed_dim", "units", "learning_rate", "dropout"}
        assert tuned["params"]["embed_dim"] in (8, 16) and tuned["best_value"] > tuned["defaults_value"]
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
    used = {**{"units": cfg.arch("gru").units, "batch_size": 32}, **tuned["params"]}
    assert summary["params"]["units"] == used["units"] and summary["batch_size"] == used["batch_size"]
    assert res.run_id is not None


@pytest.mark.slow
def test_a_trial_is_the_training_run_train_makes(prepared: dict[str, Path]) -> None:
    """Full fidelity: with deterministic ops, the best trial's val accuracy is exactly what
    `train` then measures for the settings it picked (defaults or tuned)."""
    root = prepared["root"]
    # Batch size and rate left null in the section: the trial spells out train's values, and is
    # still the run train would make.
    cfg = _cfg(root, **{"tune.n_trials": 2, "train.epochs": 2, "train.deterministic": True,
                        "mlflow.enabled": False, "architectures.lstm.learning_rate": None,
                        "architectures.lstm.batch_size": None,
                        "tune.epochs_per_trial": None})
    out = root / "tuned-fid" / "lstm.yaml"
    tuned = tune(cfg, "lstm", storage=f"sqlite:///{root / 'optuna-fid.db'}", prepared_dir=prepared["prepared"],
                 vec_dir=prepared["vec"], out_path=out, plots_dir=root / "tuned-fid" / "plots")
    assert tuned["trained_model"] == str(root / "tuned-fid" / "lstm" / "model")
    assert not (root / "tuned-fid" / "lstm" / "model-trials").exists()
    import json
    import shutil

    from newsrnn.train import train

    # Retrained from scratch (a copy of the tuned file without the trial's network beside it) ...
    alone = root / "alone" / "lstm.yaml"
    alone.parent.mkdir()
    shutil.copy(out, alone)
    res = train(cfg, "lstm", prepared_dir=prepared["prepared"], vec_dir=prepared["vec"], tuned_path=alone,
                out_dir=root / "models-fid" / "lstm", checkpoint_dir=root / "ckpt-fid")
    assert res.best_val_accuracy == pytest.approx(tuned["best_value"], abs=1e-6)
    assert res.epochs == 2
    retrained = json.loads((root / "models-fid" / "lstm" / "history.json").read_text())
    # ... and reusing the trial's network: the same history, without training again.
    reused = train(cfg, "lstm", prepared_dir=prepared["prepared"], vec_dir=prepared["vec"], tuned_path=out,
                   out_dir=root / "models-re" / "lstm", checkpoint_dir=root / "ckpt-re")
    history = json.loads((root / "models-re" / "lstm" / "history.json").read_text())
    assert [r["val_accuracy"] for r in history] == [r["val_accuracy"] for r in retrained]
    assert reused.best_val_accuracy == res.best_val_accuracy
    # The reused run encodes no texts, and still records what the retrained one records.
    fid, re_ = (json.loads((root / d / "lstm" / "train.json").read_text()) for d in ("models-fid", "models-re"))
    keys = ("batch_size", "learning_rate", "n_parameters", "best_val_accuracy")
    assert {k: re_[k] for k in keys} == {k: fid[k] for k in keys}
    assert re_["reused_trial"] == tuned["chosen_trial"] and fid["reused_trial"] is None
    # Other settings than the trial's: the network is not reused.
    other = config_from_dict(small_params(**{"tune.n_trials": 2, "train.epochs": 1, "train.deterministic": True,
                                             "mlflow.enabled": False, "mlflow.tracking_uri": cfg.mlflow.tracking_uri}))
    again = train(other, "lstm", prepared_dir=prepared["prepared"], vec_dir=prepared["vec"], tuned_path=out,
                  out_dir=root / "models-other" / "lstm", checkpoint_dir=root / "ckpt-other")
    assert again.epochs == 1


def test_tuned_params_are_used_only_when_they_beat_the_defaults() -> None:
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from newsrnn.tune import choose, decision_note

    dist = {"units": CategoricalDistribution([4, 8])}

    def trial(number: int, value: float, units: int, defaults: bool = False):  # noqa: ANN202
        t = create_trial(state=TrialState.COMPLETE, value=value, params={"units": units}, distributions=dist,
                         user_attrs={"defaults": True} if defaults else {})
        t.number = number
        return t

    own = trial(0, 0.80, 4, defaults=True)
    kept = choose([own, trial(1, 0.79, 8), trial(2, 0.80, 8)])  # a tie is not a win
    assert kept["params"] == {} and kept["kept_defaults"] and kept["best_trial"] == 0
    assert decision_note(kept).startswith("defaults kept") and "0.8000" in decision_note(kept)
    won = choose([own, trial(1, 0.83, 8)])
    assert won["params"] == {"units": 8} and not won["kept_defaults"] and won["defaults_value"] == 0.80
    assert "+3.00 pts" in decision_note(won)
    assert choose([])["params"] == {} and choose([])["best_value"] is None
    # A gain within tune.min_val_gain keeps the defaults, and train reuses trial 0's network.
    near = choose([own, trial(1, 0.802, 8)], min_gain=0.003)
    assert near["params"] == {} and near["kept_defaults"] and near["chosen_trial"] == 0 and near["best_trial"] == 1
    assert "not more than tune.min_val_gain (0.30 pts" in decision_note(near)
    clear = choose([own, trial(1, 0.804, 8)], min_gain=0.003)
    assert clear["params"] == {"units": 8} and clear["chosen_trial"] == 1


def test_trial_zero_is_exactly_the_defaults_even_outside_the_space() -> None:
    from newsrnn.tune import own_point, space

    cfg = config_from_dict(small_params(**{"tune.units": [16, 32], "tune.learning_rate": [0.01, 0.02],
                                           "architectures.lstm.learning_rate": 0.005}))
    own, sp = own_point(cfg, "lstm"), space(cfg, "lstm")
    assert own["units"] == 4 and sp["units"] == ("choice", (4, 16, 32))
    assert own["learning_rate"] == 0.005 and sp["learning_rate"] == ("log", (0.005, 0.02))
    assert "units" not in space(cfg, "wide") and "batch_size" in space(cfg, "wide")


def test_per_architecture_budget() -> None:
    cfg = config_from_dict(small_params(**{"tune.n_trials": 3, "architectures.bilstm.tune_trials": 0,
                                           "architectures.wide.tune_trials": 5}))
    assert (cfg.trials_for("lstm"), cfg.trials_for("bilstm"), cfg.trials_for("wide")) == (3, 0, 5)
    off = config_from_dict(small_params(**{"tune.n_trials": 0, "architectures.wide.tune_trials": 5}))
    assert off.trials_for("wide") == 0


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
