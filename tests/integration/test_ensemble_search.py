"""The ensemble's members searched on val (tuning on): real tiny models, real Optuna."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import small_params

from newsrnn.config import config_from_dict


@pytest.mark.slow
def test_searched_members_beat_or_keep_the_configured_ones(prepared: dict[str, Path]) -> None:
    from newsrnn.ensemble import run_stage
    from newsrnn.train import train

    root = prepared["root"]
    over = {"models": ["rnn_title", "lstm", "gru", "wide"], "ensemble": ["lstm", "gru"],
            "mlflow.enabled": False, "tune.n_trials": 1}
    cfg = config_from_dict(small_params(**over))
    for arch in cfg.models:
        train(cfg, arch, prepared_dir=prepared["prepared"], vec_dir=prepared["vec"],
              out_dir=root / "models" / arch, checkpoint_dir=root / "ckpt" / arch)
    metrics = run_stage(cfg, models_root=root / "models", out_dir=root / "ens", prepared_dir=prepared["prepared"],
                        metrics_path=root / "metrics.json", plots_dir=root / "plots")
    summary = json.loads((root / "ens" / "train.json").read_text())
    sel = summary["selection"]
    # rnn_title reads titles only: never a candidate. Subsets of {gru, lstm, wide} with 2+ members: 4.
    assert sel["searched"] == 4 and set(sel["members"]) <= {"lstm", "gru", "wide"} and len(sel["members"]) >= 2
    assert sel["val_accuracy"] >= sel["configured_val_accuracy"]
    assert sel["kept_configured"] == (sel["members"] == ["lstm", "gru"])
    assert summary["members"] == sel["members"]
    # The exported ensemble scores on val what the search measured for its members.
    assert metrics["val_accuracy"] == pytest.approx(sel["val_accuracy"], abs=1e-9)

    # A margin no subset can clear keeps the configured members, searched all the same.
    strict = config_from_dict(small_params(**{**over, "tune.min_val_gain": 0.99}))
    run_stage(strict, models_root=root / "models", out_dir=root / "ens-strict", prepared_dir=prepared["prepared"],
              metrics_path=root / "metrics-strict.json", plots_dir=root / "plots-strict")
    summary = json.loads((root / "ens-strict" / "train.json").read_text())
    assert summary["members"] == ["lstm", "gru"] and summary["selection"]["kept_configured"]
    assert summary["selection"]["searched"] == 4

    # Tuning off: exactly the configured members, no search.
    off = config_from_dict(small_params(**{**over, "tune.n_trials": 0}))
    run_stage(off, models_root=root / "models", out_dir=root / "ens-off", prepared_dir=prepared["prepared"],
              metrics_path=root / "metrics-off.json", plots_dir=root / "plots-off")
    summary = json.loads((root / "ens-off" / "train.json").read_text())
    assert summary["members"] == ["lstm", "gru"] and summary["selection"] is None
