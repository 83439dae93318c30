"""`dvc repro` end to end in a temporary git repo on a synthetic corpus (real DVC, real MLflow)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from support import make_project, small_params

from newsrnn.fileio import read_metrics

ARCHS = ["rnn_title", "rnn", "lstm", "bilstm", "wide_char", "wide_word"]  # params.yaml's models
CONVEX = {"wide_word"}  # solver lbfgs: fitted in one step, so one row of epoch metrics


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_dvc_repro_all_stages(tmp_path: Path, corpus_dir: Path) -> None:
    proj = make_project(tmp_path / "proj", small_params(**{"train.epochs": 2}), corpus_dir)
    env = {**os.environ, "NEWSRNN_DATA_DIR": str(corpus_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    _run(["dvc", "repro"], proj, env)

    for arch in ARCHS:
        m = read_metrics(proj / "metrics" / f"{arch}.json")  # scores + the run record
        for key in ("val_accuracy", "test_accuracy", "macro_f1", "train_seconds", "samples_per_second", "epochs"):
            assert key in m, (arch, key)
        assert 0.0 <= m["test_accuracy"] <= 1.0
        assert (proj / "artifacts" / "models" / arch / "model.keras").exists()
        assert (proj / "plots" / arch / "confusion.png").stat().st_size > 1000
    # The default ensemble (bilstm, wide_char, wide_word: three front ends) is one more candidate.
    ens = json.loads((proj / "metrics" / "ensemble.json").read_text())
    assert 0.0 <= ens["val_accuracy"] <= 1.0 and (proj / "artifacts" / "ensemble" / "model.keras").exists()
    champion = json.loads((proj / "artifacts" / "champion.json").read_text())
    best = max(ARCHS + ["ensemble"],
               key=lambda a: json.loads((proj / "metrics" / f"{a}.json").read_text())["val_accuracy"])
    assert champion["arch"] == best and champion["version"] == 1
    assert sorted(champion["candidates"]) == sorted(ARCHS + ["ensemble"])

    # One MLflow run per architecture, each with params, per-epoch metrics and its model.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("newsrnn")
    runs = client.search_runs([exp.experiment_id])
    by_arch = {r.data.tags["arch"]: r for r in runs if r.data.tags.get("stage") == "train"}
    assert sorted(by_arch) == sorted(ARCHS)
    for arch, run in by_arch.items():
        assert run.data.params["arch.name"] == arch
        curve = client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
        assert len(curve) == (1 if arch in CONVEX else 2), arch  # the curve
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1  # the exported model's
        assert run.data.tags["git_commit"] != "unknown" and len(run.data.tags["data_sha256"]) == 64
        logged = client.search_logged_models([exp.experiment_id],
                                             filter_string=f"source_run_id = '{run.info.run_id}'")
        assert len(logged) == 1, arch
        arts = [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
        assert "plots/confusion.png" in arts and "plots/history.png" in arts
    assert client.get_model_version_by_alias("agnews-rnn", "champion").tags["arch"] == best
    # The report stage ran after register, with a row per candidate.
    page = (proj / "reports" / "index.html").read_text()
    assert page.count('class="candidate') == len(ARCHS) + 1 and 'id="scatter"' in page

    # A second repro does nothing.
    out = _run(["dvc", "repro"], proj, env)
    assert "Data and pipelines are up to date" in out.stdout
    assert json.loads(_run(["dvc", "metrics", "show", "--json"], proj, env).stdout)
    _run(["dvc", "plots", "show"], proj, env)

    # Changing one architecture's units invalidates only that architecture (and register).
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["architectures"]["rnn"]["units"] = 6
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(_run(["dvc", "status", "--json"], proj, env).stdout)
    assert sorted(status) == ["train@rnn", "tune@rnn"], status
