"""The MLflow UI as the place to choose a model, checked in a real browser on a real store.

The store comes from a small real pipeline run (``pipeline_store``); ``mlflow server`` serves it
and headless Chromium opens the link newsrnn prints (``tracking.runs_page``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from browser import chrome, mlflow_server, wait_for
from store import STORE_ARCHS

from newsrnn.fileio import read_metrics, sha256_file


@pytest.mark.slow
def test_runs_page_lists_every_architecture_with_the_exported_models_val_accuracy(pipeline_store: dict) -> None:
    from mlflow import MlflowClient
    from selenium.webdriver.common.by import By

    from newsrnn.tracking import runs_page

    root, uri = pipeline_store["root"], pipeline_store["uri"]
    exp = MlflowClient(uri).get_experiment_by_name("newsrnn")
    expected = {a: read_metrics(root / "metrics" / f"{a}.json") for a in STORE_ARCHS}
    with mlflow_server(uri, root) as url, chrome() as driver:
        # The plain experiment link must land on the runs table, not the GenAI overview.
        driver.get(f"{url}/#/experiments/{exp.experiment_id}?workflowType=machine_learning")
        wait_for(driver, "[col-id='attributes.`Run Name`'][row-id], [role='row'][row-id]")
        assert f"/experiments/{exp.experiment_id}/runs" in driver.current_url, driver.current_url

        driver.get(runs_page(uri, exp.experiment_id, base_url=url))
        cells = wait_for(driver, "[role='row'][row-id] [col-id='metrics.`val_accuracy`']", count=len(STORE_ARCHS))
        assert "/runs" in driver.current_url and "overview" not in driver.current_url
        rows = {}
        for row in driver.find_elements(By.CSS_SELECTOR, "[role='row'][row-id]"):
            by_col = {c.get_attribute("col-id"): c.text for c in row.find_elements(By.CSS_SELECTOR, "[col-id]")}
            rows.setdefault(row.get_attribute("row-id"), {}).update(by_col)
        shown = {}
        for run_id, cols in rows.items():
            name = cols.get("attributes.`Run Name`", "").split("\n")[-1]
            if name:
                shown[name] = (run_id, cols)
        assert sorted(shown) == sorted(STORE_ARCHS), shown.keys()
        for arch, m in expected.items():
            run_id, cols = shown[arch]
            assert run_id == m["run_id"]
            assert float(cols["metrics.`val_accuracy`"]) == pytest.approx(m["val_accuracy"], abs=1e-9), arch
            assert float(cols["metrics.`test_accuracy`"]) == pytest.approx(m["test_accuracy"], abs=1e-9), arch
            assert float(cols["metrics.`latency_p50_ms`"]) == pytest.approx(m["latency_p50_ms"], rel=1e-6), arch
            assert float(cols["metrics.`model_size_mb`"]) == pytest.approx(m["model_size_mb"], rel=1e-6), arch
            assert "ag_news-train" in cols["attributes.`Dataset`"], cols["attributes.`Dataset`"]
        # Best validation accuracy first, as register ranks them.
        # The grid may keep its rows in the DOM in insertion order; their place on screen is row-index.
        shown_rows = [c.find_element(By.XPATH, "./ancestor::*[@role='row'][1]") for c in cells]
        shown_rows.sort(key=lambda r: int(r.get_attribute("row-index") or r.get_attribute("aria-rowindex") or 0))
        order = [r.get_attribute("row-id") for r in shown_rows]
        ranked = [m["run_id"] for m in sorted(expected.values(), key=lambda m: -m["val_accuracy"])]
        assert [r for r in order if r in ranked][: len(ranked)] == ranked


@pytest.mark.slow
def test_runs_hold_exported_metrics_curves_datasets_and_lineage(pipeline_store: dict) -> None:
    from mlflow import MlflowClient

    from newsrnn.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    root, uri = pipeline_store["root"], pipeline_store["uri"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("newsrnn")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    for arch in STORE_ARCHS:
        m = read_metrics(root / "metrics" / f"{arch}.json")
        run = client.get_run(m["run_id"])
        history = json.loads((root / "artifacts/models" / arch / "history.json").read_text())
        # The plain key is the exported model's only value; the curve lives under epoch/.
        assert [x.value for x in client.get_metric_history(run.info.run_id, "val_accuracy")] == [m["val_accuracy"]]
        curve = client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
        assert [x.value for x in sorted(curve, key=lambda x: x.step)] == [r["val_accuracy"] for r in history]
        for key in ("test_accuracy", "macro_f1", "latency_p50_ms", "throughput_per_s", "model_size_mb"):
            assert run.data.metrics[key] == pytest.approx(m[key]), (arch, key)
        inputs = {{t.key: t.value for t in d.tags}["mlflow.data.context"]: d for d in run.inputs.dataset_inputs}
        assert sorted(inputs) == ["test", "training", "validation"]
        for split, context in (("train", "training"), ("val", "validation"), ("test", "test")):
            tags = {t.key: t.value for t in inputs[context].tags}
            assert tags["sha256"] == sha256_file(root / "data/prepared" / f"{split}.parquet")
            assert inputs[context].dataset.source and "csv" in tags["origin"]
        for key in ("git_commit", "dvc_exp_name", "kfp_run_id", "data_sha256"):
            assert run.data.tags.get(key), (arch, key)


@pytest.mark.slow
def test_run_duration_is_training_plus_evaluation_not_the_gap_between(pipeline_store: dict, tmp_path) -> None:
    """A run evaluated long after training ends at train end + evaluation time."""
    from mlflow import MlflowClient

    from newsrnn.config import config_from_dict
    from newsrnn.evaluate import evaluate
    from newsrnn.train import train

    root = pipeline_store["root"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = config_from_dict({**pipeline_store["params"], "mlflow": {**pipeline_store["params"]["mlflow"],
                                                                     "tracking_uri": uri}})
    result = train(cfg, "rnn_title", root / "data/prepared", root / "artifacts/vectorizer", None,
                   tmp_path / "model", tmp_path / "ckpt")
    gap = 10.0
    time.sleep(gap)
    t0 = time.time()
    evaluate(cfg, "rnn_title", root / "data/prepared", tmp_path / "model", tmp_path / "m.json", tmp_path / "plots")
    eval_s = time.time() - t0
    info = MlflowClient(uri).get_run(result.run_id).info
    wall = json.loads((tmp_path / "model" / "train.json").read_text())["wall_seconds"]
    duration = (info.end_time - info.start_time) / 1000
    assert info.status == "FINISHED"
    assert duration < wall + eval_s + gap / 2, (duration, wall, eval_s)
    assert duration >= wall, (duration, wall)


@pytest.mark.slow
def test_served_model_loads_without_warnings(pipeline_store: dict) -> None:
    """A fresh process loads the champion as `mlflow models serve` does and hears no warning."""
    code = ("import warnings, mlflow\n"
            "warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    model = mlflow.pyfunc.load_model('models:/agnews-rnn@champion')\n"
            "print('WARNED:', [str(w.message)[:200] for w in seen if 'sqlalchemy' not in w.filename])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=pipeline_store["root"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": pipeline_store["uri"]})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "WARNED: []" in out.stdout, out.stdout
    assert "type hint" not in out.stderr.lower(), out.stderr[-2000:]
