"""The CLI: fast help without heavy imports, one clear line (exit 2) for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import small_params

SUBCOMMANDS = ["fetch", "prepare", "vectorize", "tune", "train", "evaluate", "register", "predict", "bench",
               "kfp", "server"]


def _newsrnn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newsrnn", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys, newsrnn.cli as c; p = c.build_parser(); "
            "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'optuna', 'kfp', 'dvc', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub: str, tmp_path: Path) -> None:
    out = _newsrnn(sub, "--help", cwd=tmp_path)
    assert out.returncode == 0 and "usage: newsrnn" in out.stdout


def test_bad_params_is_one_clear_line(tmp_path: Path) -> None:
    params = small_params()
    params["train"]["epochz"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = _newsrnn("prepare", cwd=tmp_path)
    assert out.returncode == 2
    assert "params.yaml: train.epochz: unknown key; allowed keys here: epochs" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_csv_names_file_and_line_and_keeps_outputs(tmp_path: Path, corpus_dir: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params()))
    env = {"NEWSRNN_DATA_DIR": str(corpus_dir)}
    assert _newsrnn("fetch", cwd=tmp_path, env=env).returncode == 0
    before = (tmp_path / "data" / "raw" / "train.parquet").read_bytes()
    with open(corpus_dir / "train.csv", "ab") as f:
        f.write(b'"2","caf\xe9","x"\n"3","only two fields"\n')
    out = _newsrnn("fetch", cwd=tmp_path, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "train.csv:401: not valid UTF-8" in out.stderr
    assert "train.csv:402: expected 3 fields (class,title,description), got 2" in out.stderr
    assert (tmp_path / "data" / "raw" / "train.parquet").read_bytes() == before


def test_missing_inputs_say_which_stage_to_run(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params()))
    out = _newsrnn("prepare", cwd=tmp_path)
    assert out.returncode == 2 and "run `newsrnn fetch` first" in out.stderr
    out = _newsrnn("predict", "--model", str(tmp_path / "model.h5"), "hello", cwd=tmp_path)
    assert out.returncode == 2 and "only .keras model files are accepted" in out.stderr


def test_tracking_uri_does_not_leak_into_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stages in one process with different params must not share a store through the env."""
    from newsrnn.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = Tracker(f"sqlite:///{tmp_path / 'a.db'}", "exp")
    assert t.start("run") is not None
    t.end()
    assert "MLFLOW_TRACKING_URI" not in os.environ
