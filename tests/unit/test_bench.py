"""The benchmark harness (benchmarks/harness.py, run by ``newsrnn bench``): helpers, a bad-input
error, and one tiny end-to-end run that must produce the results schema."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import small_params
from synthetic import write_corpus

from newsrnn.cli import _harness, main

bench = _harness()
VAL_NOISE = Path(__file__).parents[2] / "benchmarks" / "val_noise.py"


def test_bench_without_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSRNN_DATA_DIR", raising=False)
    assert main(["bench", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "nowhere" in err and "train.csv" in err


def test_pipeline_bench_without_dvc_on_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_corpus(tmp_path / "data", n_train=40, n_test=8)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["bench", "--pipeline", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "dvc is not on PATH" in err


def test_percentile_interpolates() -> None:
    assert bench.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert bench.percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def test_ratio_handles_missing() -> None:
    assert bench.ratio(6.0, 2.0) == 3.0
    assert bench.ratio(None, 2.0) is None
    assert bench.ratio(1.0, 0.0) is None


def test_markdown_table_shows_missing_values() -> None:
    row = {"arch": "gru", "compared_to": "lstm", "notebook_epoch_s": 10.0, "notebook_samples_per_s": 100.0,
           "notebook_test_accuracy": 0.8, "newsrnn_epoch_s": 2.0, "newsrnn_samples_per_s": 500.0,
           "newsrnn_time_to_notebook_accuracy_s": None, "speedup": None, "newsrnn_test_accuracy": 0.85,
           "accuracy_gain": 0.05, "notebook_peak_rss_mb": 700.0, "peak_rss_mb": 800.0}
    table = bench.markdown_table({"archs": [row]})
    assert "| gru (vs lstm) | 10.0 |" in table
    assert "+5.0" in table and "| - | - | 0.8500 |" in table  # no time to target, no speedup


def test_bench_end_to_end_schema(tmp_path: Path) -> None:
    """Synthetic corpus, tiny networks: every required key is present and sane."""
    data = write_corpus(tmp_path / "ag", n_train=240, n_test=80)
    params = small_params(**{"mlflow.enabled": False, "train.epochs": 2, "ensemble": ["rnn_title", "rnn"],
                             "architectures.rnn.text": "title"})
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "results" / "bench.json"
    args = argparse.Namespace(archs="rnn_title,rnn", max_train_rows=200, out=str(out), data_dir=str(data),
                              params=str(params_path), skip=["dvc"])
    bench.run_bench(args)
    res = json.loads(out.read_text())
    row, rnn, ens = res["archs"]
    # The ensemble row: accuracy of the mean of the members, against the better notebook member.
    assert ens["arch"] == "ensemble" and ens["members"] == ["rnn_title", "rnn"]
    assert 0 <= ens["newsrnn_test_accuracy"] <= 1 and 0 <= ens["newsrnn_val_accuracy"] <= 1
    ref = max(("rnn_title", "rnn"), key=lambda a: res["archs"][("rnn_title", "rnn").index(a)]["notebook_test_accuracy"])
    assert ens["compared_to"] == ref
    assert ens["newsrnn_train_s"] == pytest.approx(row["newsrnn_train_s"] + rnn["newsrnn_train_s"])
    assert "| ensemble of rnn_title+rnn (vs " in bench.markdown_table(res)
    for key in ("arch", "notebook_epoch_s", "notebook_test_accuracy", "newsrnn_time_to_notebook_accuracy_s",
                "speedup", "newsrnn_test_accuracy", "peak_rss_mb"):
        assert key in row, key
    assert row["arch"] == "rnn_title"
    assert row["notebook_epoch_s"] > 0 and 0 <= row["notebook_test_accuracy"] <= 1
    assert 0 <= row["newsrnn_test_accuracy"] <= 1 and row["peak_rss_mb"] > 50
    assert row["notebook_train_rows"] == 200 and row["newsrnn_train_rows"] == 180
    reached = row["newsrnn_time_to_notebook_accuracy_s"]
    if reached is not None:
        assert row["speedup"] == pytest.approx(row["notebook_epoch_s"] / reached)
    for key in ("p50_ms", "p99_ms", "batch_texts_per_s"):
        assert res["predict"][key] > 0
    assert res["predict"]["p99_ms"] >= res["predict"]["p50_ms"]
    assert res["predict"]["graph_p50_ms"] > 0 and res["predict"]["warmup_s"] >= 0
    assert res["help"]["median_s"] > 0


@pytest.mark.slow
def test_pipeline_bench_times_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``newsrnn bench --pipeline`` on a synthetic corpus: the notebook's four runs, then dvc repro
    in a clone of HEAD (tuning on; the tuning-off run is the same code with n_trials 0). The kept
    models then go through ``benchmarks/val_noise.py``."""
    from newsrnn.cli import _benchmark

    keep = tmp_path / "keep"
    monkeypatch.setenv("NEWSRNN_BENCH_KEEP_MODELS", str(keep))
    data = write_corpus(tmp_path / "ag", n_train=240, n_test=80)
    params = small_params(**{"models": ["rnn_title"], "tune.n_trials": 1})
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "pipeline.json"
    args = argparse.Namespace(params=str(params_path), data_dir=str(data), max_train_rows=200, out=str(out),
                              skip=["tuning_off"])
    res = _benchmark("pipeline").run_pipeline_bench(args)
    assert json.loads(out.read_text())["summary"] == res["summary"]
    assert set(res["notebook"]) == {"rnn_title", "rnn", "lstm", "bilstm"}
    m = res["modes"]["tuning_on"]
    assert set(m["archs"]) == {"rnn_title"} and m["champion"]["arch"] == "rnn_title"
    assert all(m["stage_kind_s"][k] > 0 for k in ("fetch", "prepare", "vectorize", "tune", "train",
                                                  "evaluate", "register"))
    assert set(m["stage_s"]) >= {"tune@rnn_title", "train@rnn_title", "register"}
    assert m["wall_s"] >= sum(m["stage_s"].values()) * 0.99
    s = res["summary"]
    assert s["tuning_on_wall_over_notebook"] == pytest.approx(m["wall_s"] / s["notebook_epochs_s"])
    table = out.with_suffix(".md").read_text()
    assert "| rnn_title |" in table and "| **whole pipeline** |" in table

    kept = keep / "tuning_on"
    assert (kept / "models" / "rnn_title" / "model.keras").is_file() and (kept / "prepared" / "val.parquet").is_file()
    model = f"{kept / 'models' / 'rnn_title'}"
    r = subprocess.run([sys.executable, str(VAL_NOISE), "--prepared", str(kept / "prepared"), "--params",
                        str(params_path), "--models", f"a={model}", f"b={model}", "--pair", "a,b",
                        "--configured", "a,b"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    val = m["archs"]["rnn_title"]["val_accuracy"]
    assert f"a: val {val:.4f}" in r.stdout
    assert "a - b: val +0.00 pts (paired s.e. 0.00 pts, 0 rows disagree), test +0.00 pts" in r.stdout
    assert "better in 0 of 10" in r.stdout  # the same model twice: no selection can beat it


def test_val_noise_bad_model_dir_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(VAL_NOISE), "--prepared", str(tmp_path), "--params",
                        str(Path(__file__).parents[2] / "params.yaml"), "--models", f"lstm={tmp_path / 'none'}",
                        "--configured", "lstm"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"val_noise: --models lstm={tmp_path / 'none'}: expected NAME=DIR with DIR/train.json"


def test_pipeline_summary_compares_tuning_on_with_off() -> None:
    """The ratios and the on/off comparison the targets are stated in, from two modes' results."""
    from newsrnn.cli import _benchmark

    pipeline = _benchmark("pipeline")
    notebook = {"rnn": {"epoch_s": 30.0, "test_accuracy": 0.83}, "lstm": {"epoch_s": 70.0, "test_accuracy": 0.87}}
    kinds = {k: 1.0 for k in pipeline.STAGES}

    def mode(wall: float, rnn: tuple[float, float], lstm: tuple[float, float], champ: str) -> dict:
        archs = {"rnn": {"val_accuracy": rnn[0], "test_accuracy": rnn[1]},
                 "lstm": {"val_accuracy": lstm[0], "test_accuracy": lstm[1]},
                 "wide": {"val_accuracy": 0.95, "test_accuracy": 0.95}}  # linear: not a recurrent network
        return {"wall_s": wall, "stage_kind_s": kinds, "archs": archs, "recurrent": ["lstm", "rnn"],
                "champion": {"arch": champ, **archs[champ]}}

    modes = {"tuning_on": mode(250.0, (0.88, 0.87), (0.905, 0.90), "lstm"),
             "tuning_off": mode(200.0, (0.89, 0.88), (0.90, 0.895), "lstm")}
    s = pipeline.summarize(notebook, modes)
    assert s["notebook_epochs_s"] == 100.0 and s["tuning_on_wall_over_notebook"] == pytest.approx(2.5)
    assert s["tuning_on_min_gain_over_notebook"] == pytest.approx(0.03)  # lstm: 0.90 - 0.87
    assert s["champion_val_gain_from_tuning"] == pytest.approx(0.005)
    assert s["archs_tuned_below_untuned_val"] == ["rnn"]
    assert s["tuning_on_best_single_test"] == 0.90 and s["tuning_off_best_single_test"] == 0.895
    assert (s["tuning_off_best_val_single"], s["tuning_off_best_val_single_test"]) == ("lstm", 0.895)
    table = pipeline.markdown({"notebook": notebook, "modes": modes, "summary": s})
    assert "| champion of tuning_on (lstm) | - | 0.9050 | 0.9000 |" in table
    assert "2.50x" in table and "['rnn']" in table
    assert "best single recurrent network test 0.9000 (best on val: lstm, test 0.9000)" in table
