"""register picks by validation accuracy, idempotently; predict and `mlflow models serve` take raw text."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from support import small_params

from newsrnn.config import config_from_dict


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two really trained and evaluated architectures in one SQLite MLflow store."""
    from synthetic import write_corpus

    from newsrnn.evaluate import evaluate
    from newsrnn.fetch import fetch
    from newsrnn.prepare import prepare
    from newsrnn.train import train
    from newsrnn.vectorize import vectorize

    root = tmp_path_factory.mktemp("reg")
    corpus = write_corpus(root / "csv", n_train=300, n_test=80)
    cfg = config_from_dict(small_params(**{"data.local_dir": str(corpus), "models": ["rnn_title", "gru"],
                                           "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}))
    fetch(cfg.data, out_dir=root / "raw")
    prepare(cfg.data, cfg.seed, raw_dir=root / "raw", out_dir=root / "prepared")
    vectorize(cfg.vectorizer, root / "prepared", root / "vec")
    for arch in cfg.models:
        train(cfg, arch, root / "prepared", root / "vec", None, root / "models" / arch, root / "ckpt" / arch)
        evaluate(cfg, arch, root / "prepared", root / "models" / arch, root / "metrics" / f"{arch}.json",
                 root / "plots" / arch)
    return {"root": root, "cfg": cfg}


def _candidates(root: Path) -> list[tuple[Path, Path]]:
    return [(root / "metrics" / f"{a}.json", root / "models" / a) for a in ("rnn_title", "gru")]


@pytest.mark.slow
def test_register_picks_by_validation_and_is_idempotent(two_models: dict) -> None:
    from mlflow import MlflowClient

    from newsrnn.register import register

    root, cfg = two_models["root"], two_models["cfg"]
    # Make validation and test disagree: rnn_title best on val, gru best on test.
    for arch, val, test in (("rnn_title", 0.9, 0.5), ("gru", 0.5, 0.95)):
        p = root / "metrics" / f"{arch}.json"
        m = json.loads(p.read_text())
        p.write_text(json.dumps({**m, "val_accuracy": val, "test_accuracy": test}))
    first = register(cfg, _candidates(root), out_path=root / "champion.json")
    assert first["arch"] == "rnn_title" and first["created"] and first["version"] == 1
    second = register(cfg, _candidates(root), out_path=root / "champion.json")
    assert second["version"] == 1 and not second["created"]
    client = MlflowClient(cfg.mlflow.tracking_uri)
    versions = client.search_model_versions("name='agnews-rnn'")
    assert len(versions) == 1
    mv = client.get_model_version_by_alias("agnews-rnn", "champion")
    assert mv.tags["arch"] == "rnn_title" and mv.tags["val_accuracy"] == "0.9000"
    assert mv.tags["test_accuracy"] == "0.5000" and len(mv.tags["data_sha256"]) == 64
    assert mv.tags["git_commit"]
    assert json.loads((root / "champion.json").read_text())["arch"] == "rnn_title"

    # The champion loads from the registry and predicts raw text.
    from newsrnn.predict import load_predictor

    out = load_predictor(None, cfg).predict(["stocks profit oil market shares", ""])
    assert len(out) == 2 and abs(sum(out[1]["probabilities"].values()) - 1) < 1e-5


@pytest.mark.slow
def test_logging_checks_the_model_cold_and_a_load_warms_it(two_models: dict) -> None:
    import mlflow

    from newsrnn.serving import WARMUP_ENV

    root, cfg = two_models["root"], two_models["cfg"]
    uri = json.loads((root / "metrics" / "gru.json").read_text())["model_uri"]
    # Logging (done by evaluate above) switched the warm-up off only while MLflow checked the example.
    assert WARMUP_ENV not in os.environ
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    warm = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    assert warm.warmup_s is not None and warm.warmup_s > 0
    os.environ[WARMUP_ENV] = "0"
    try:
        cold = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    finally:
        del os.environ[WARMUP_ENV]
    assert cold.warmup_s is None
    texts = ["stocks profit oil market shares", "cup final tonight"]
    assert (cold.predictor.predict_proba(texts) == warm.predictor.predict_proba(texts)).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_raw_text(two_models: dict) -> None:
    from newsrnn.register import register

    root, cfg = two_models["root"], two_models["cfg"]
    register(cfg, _candidates(root), out_path=root / "champion.json")
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri}
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow_bin, "models", "serve", "-m", "models:/agnews-rnn@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail("server did not answer /ping")
        ok = requests.post(f"{url}/invocations", timeout=60, json={
            "dataframe_split": {"columns": ["text"], "data": [["Stocks rally as oil falls"], [""]]}})
        assert ok.status_code == 200, ok.text
        preds = ok.json()["predictions"]
        assert len(preds) == 2 and preds[0]["label"] in ("World", "Sports", "Business", "Sci/Tech")
        assert abs(sum(preds[1][c] for c in ("World", "Sports", "Business", "Sci/Tech")) - 1) < 1e-4
        numbers = requests.post(f"{url}/invocations", timeout=60,
                                json={"dataframe_split": {"columns": ["text"], "data": [[1], [2]]}})
        assert 400 <= numbers.status_code < 500, numbers.text
        missing = requests.post(f"{url}/invocations", timeout=60,
                                json={"dataframe_split": {"columns": ["body"], "data": [["x"]]}})
        assert 400 <= missing.status_code < 500 and "text" in missing.text, missing.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
