"""Reproducible by default: two runs of the same settings write byte-identical metrics files;
what differs by nature (run ids, timings, the model zip's timestamps) is in the run record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import small_params

from newsrnn.config import config_from_dict


@pytest.mark.slow
def test_two_runs_give_identical_metrics_files(prepared: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from newsrnn.evaluate import RUN_FIELDS, evaluate
    from newsrnn.train import train

    cfg = config_from_dict(small_params(**{"train.epochs": 2, "mlflow.enabled": False}))
    assert cfg.train.deterministic == config_from_dict(small_params()).train.deterministic  # the default
    written = []
    for run in ("a", "b"):
        root = prepared["root"] / run
        root.mkdir()
        monkeypatch.chdir(root)
        for arch in ("lstm", "wide", "wide_word"):
            train(cfg, arch, prepared_dir=prepared["prepared"], vec_dir=prepared["vec"],
                  out_dir=Path("models") / arch, checkpoint_dir=Path("ckpt") / arch)
            evaluate(cfg, arch, prepared["prepared"], model_dir=Path("models") / arch,
                     metrics_path=Path("metrics") / f"{arch}.json", plots_dir=Path("plots") / arch,
                     record_path=Path("metrics") / "runs" / f"{arch}.json")
        written.append({f.name: f.read_bytes() for f in sorted(Path("metrics").glob("*.json"))})
    assert set(written[0]) == {"lstm.json", "wide.json", "wide_word.json"}
    assert written[0] == written[1]
    metrics = json.loads(written[0]["lstm.json"])
    assert not set(RUN_FIELDS) & set(metrics) and metrics["record"] == os.path.join("runs", "lstm.json")
    record = json.loads((prepared["root"] / "b" / "metrics" / "runs" / "lstm.json").read_text())
    assert {"train_seconds", "latency_p50_ms", "model_sha256"} <= set(record)
