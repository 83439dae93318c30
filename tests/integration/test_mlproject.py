"""MLproject entry points run the same CLI through a real `mlflow run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from support import ROOT, small_params


def test_mlflow_run_entry_points(tmp_path: Path, corpus_dir: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(ROOT / "MLproject", proj / "MLproject")
    (proj / "params.yaml").write_text(yaml.safe_dump(small_params()))
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert {"main", "fetch", "prepare", "vectorize", "tune", "train", "evaluate", "register"} <= set(
        spec["entry_points"])
    env = {**os.environ, "NEWSRNN_DATA_DIR": str(corpus_dir),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    for entry in ("fetch", "prepare"):
        out = subprocess.run([mlflow_bin, "run", str(proj), "-e", entry, "--env-manager", "local"],
                             cwd=proj, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert (proj / "data" / "raw" / "train.parquet").exists()
    assert (proj / "data" / "prepared" / "val.parquet").exists()

    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags.get("mlflow.project.entryPoint") for r in runs) == ["fetch", "prepare"]
