"""Stage ``evaluate@arch``: validation and test metrics, confusion matrix, plots.

Writes ``metrics/<arch>.json`` (for ``dvc metrics``) and ``plots/<arch>/`` (training curves,
per-row predictions for DVC's confusion template, the confusion matrix as CSV and PNG), and adds
them to the architecture's MLflow run, together with the model itself, the prepared splits as
dataset inputs, and what a server would care about: single-text latency, batch throughput and
the model's size on disk (measured here, on this machine, through the same ``Predictor`` that
``predict`` uses).

The run was closed by ``train``; evaluate reopens it and, when done, sets its end time to the
training end plus the evaluation time, so the UI's Duration is the work done for this run and
not the wall time of the whole pipeline between the two stages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from newsrnn.config import CLASS_NAMES, Config
from newsrnn.errors import ArtifactError
from newsrnn.fileio import atomic_dir, write_json


def classification_metrics(y_true: Any, y_pred: Any, n_classes: int = 4) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class = {}
    f1s = []
    for k in range(n_classes):
        tp = cm[k, k]
        prec = tp / cm[:, k].sum() if cm[:, k].sum() else 0.0
        rec = tp / cm[k, :].sum() if cm[k, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per_class[CLASS_NAMES[k]] = {"precision": float(prec), "recall": float(rec), "f1": float(f1),
                                     "support": int(cm[k, :].sum())}
    return {"accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else 0.0,
            "macro_f1": float(np.mean(f1s)), "per_class": per_class, "confusion": cm.tolist()}


LATENCY_TEXTS = 50


def measure_speed(predictor: Any, texts: list[str], n_single: int = LATENCY_TEXTS) -> dict[str, float]:
    """p50/p99 milliseconds for one text per call, and texts per second for ``texts`` as one batch.

    Each is measured after a warm-up call of the same shape, so tracing is not counted.
    """
    import tensorflow as tf

    singles = texts[:n_single] or [""]
    # Texts of new lengths trace new graphs; TensorFlow's retracing warning is expected here.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        return _timed(predictor, singles, texts)
    finally:
        logger.setLevel(level)


def _timed(predictor: Any, singles: list[str], texts: list[str]) -> dict[str, float]:
    import time

    import numpy as np

    predictor.predict_proba(singles[:1])
    times = []
    for t in singles:
        t0 = time.perf_counter()
        predictor.predict_proba([t])
        times.append((time.perf_counter() - t0) * 1000)
    predictor.predict_proba(texts[: min(len(texts), 256)])
    t0 = time.perf_counter()
    predictor.predict_proba(texts)
    batch_s = time.perf_counter() - t0
    return {"latency_p50_ms": float(np.percentile(times, 50)), "latency_p99_ms": float(np.percentile(times, 99)),
            "throughput_per_s": len(texts) / batch_s if batch_s > 0 else 0.0}


# What differs between two runs of the same commit by nature (ids, clocks, the zip's timestamps).
# `newsrnn evaluate` writes these to metrics/runs/<arch>.json, so that metrics/<arch>.json holds
# only what the model scores and two runs can be compared byte for byte (`fileio.read_metrics`
# merges them back).
RUN_FIELDS = ("run_id", "model_uri", "model_sha256", "train_seconds", "samples_per_second", "latency_p50_ms",
              "latency_p99_ms", "throughput_per_s", "model_size_mb")


def model_size_mb(model_dir: str | Path) -> float:
    """Size on disk of the exported model file (what a server downloads and loads)."""
    return (Path(model_dir) / "model.keras").stat().st_size / 1e6


def mlflow_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The exported model's numbers as MLflow metrics (plain keys; curves are under ``epoch/``)."""
    keys = ("val_accuracy", "test_accuracy", "macro_f1", "val_macro_f1", "latency_p50_ms", "latency_p99_ms",
            "throughput_per_s", "model_size_mb", "train_seconds")
    out = {k: float(metrics[k]) for k in keys if metrics.get(k) is not None}
    for cls, m in metrics.get("per_class", {}).items():
        out[f"test_f1_{cls.lower().replace('/', '_')}"] = float(m["f1"])
    return out


def _confusion_png(cm: list[list[int]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(4), CLASS_NAMES, rotation=30)
    ax.set_yticks(range(4), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    top = max(max(r) for r in cm) or 1
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _history_png(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    if not history:  # an ensemble is not trained: no curves to draw
        a1.text(0.5, 0.5, "no training history", ha="center")
    a1.plot(epochs, [r["loss"] for r in history], "o-", label="train")
    a1.plot(epochs, [r["val_loss"] for r in history], "o-", label="val")
    a1.set_title("loss")
    a2.plot(epochs, [r["accuracy"] for r in history], "o-", label="train")
    a2.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="val")
    a2.set_title("accuracy")
    for a in (a1, a2):
        a.set_xlabel("epoch")
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(
    cfg: Config,
    arch_name: str,
    prepared_dir: str | Path = "data/prepared",
    model_dir: str | Path | None = None,
    metrics_path: str | Path | None = None,
    plots_dir: str | Path | None = None,
    record_path: str | Path | None = None,
) -> dict[str, Any]:
    """Score the exported model on val and test; write metrics and plots; log them to MLflow.

    With ``record_path``, the run's ids and timings (``RUN_FIELDS``) go there and the metrics
    file names it; without, one file holds both (a Kubeflow metrics artifact).
    """
    import time

    import pandas as pd

    from newsrnn.data import load_splits, texts_of
    from newsrnn.predictor import Predictor
    from newsrnn.tracking import Tracker

    t_start = time.time()
    model_dir = Path(model_dir or f"artifacts/models/{arch_name}")
    if not (model_dir / "train.json").is_file():
        made_by = "ensemble" if arch_name == "ensemble" else f"train {arch_name}"
        raise ArtifactError(f"{model_dir}: no trained model; run `newsrnn {made_by}` first")
    metrics_path = Path(metrics_path or f"metrics/{arch_name}.json")
    plots_dir = Path(plots_dir or f"plots/{arch_name}")
    summary = json.loads((model_dir / "train.json").read_text())
    history = json.loads((model_dir / "history.json").read_text())
    _, val_df, test_df = load_splits(prepared_dir)
    arch = cfg.candidate(arch_name)
    predictor = Predictor.from_path(model_dir, max_batch=len(test_df) + len(val_df))

    scores = {}
    for name, df in (("val", val_df), ("test", test_df)):
        probs = predictor.predict_proba(list(texts_of(df, arch)))
        scores[name] = (classification_metrics(df["label"].to_numpy(), probs.argmax(1)), probs)
    val_m, test_m = scores["val"][0], scores["test"][0]
    speed = measure_speed(predictor, list(texts_of(test_df, arch)))
    metrics = {
        "arch": arch_name,
        "val_accuracy": val_m["accuracy"], "val_macro_f1": val_m["macro_f1"],
        "test_accuracy": test_m["accuracy"], "macro_f1": test_m["macro_f1"],
        "per_class": test_m["per_class"],
        "train_seconds": summary["train_seconds"], "samples_per_second": summary["samples_per_second"],
        "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
        "n_parameters": summary["n_parameters"], "model_sha256": summary["model_sha256"],
        "run_id": summary["run_id"], **speed, "model_size_mb": model_size_mb(model_dir),
    }
    with atomic_dir(plots_dir) as tmp:
        test_pred = scores["test"][1].argmax(1)
        pd.DataFrame({"actual": [CLASS_NAMES[i] for i in test_df["label"]],
                      "predicted": [CLASS_NAMES[i] for i in test_pred]}).to_csv(tmp / "predictions.csv", index=False)
        pd.DataFrame(test_m["confusion"], index=list(CLASS_NAMES), columns=list(CLASS_NAMES)).to_csv(
            tmp / "confusion.csv", index_label="actual\\predicted")
        pd.DataFrame(history).to_csv(tmp / "history.csv", index=False)
        _confusion_png(test_m["confusion"], tmp / "confusion.png", f"{arch_name} (test)")
        _history_png(history, tmp / "history.png", arch_name)
    tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment, cfg.mlflow.enabled)
    if summary.get("run_id"):
        _log_to_run(tracker, arch_name, summary["run_id"], metrics, plots_dir, model_dir, prepared_dir, t_start)
    if record_path is not None:
        write_json(record_path, {k: metrics[k] for k in RUN_FIELDS if k in metrics})
        scored = {k: v for k, v in metrics.items() if k not in RUN_FIELDS}
        # Relative to the metrics file, so the pair can be moved or read from anywhere.
        write_json(metrics_path, {**scored, "record": os.path.relpath(record_path, Path(metrics_path).parent)})
    else:
        write_json(metrics_path, metrics)
    print(f"evaluate: {arch_name} val_accuracy {metrics['val_accuracy']:.4f} "
          f"test_accuracy {metrics['test_accuracy']:.4f} macro_f1 {metrics['macro_f1']:.4f}")
    return metrics


def _log_to_run(tracker: Any, arch_name: str, run_id: str, metrics: dict[str, Any], plots_dir: Path,
                model_dir: Path, prepared_dir: str | Path, t_start: float) -> None:
    """Add the evaluation to the training run and end it at train end + evaluation time."""
    import time

    from newsrnn.serving import log_pyfunc_model
    from newsrnn.tracking import log_split_inputs

    def train_end() -> int | None:
        import mlflow

        return mlflow.MlflowClient(tracker.tracking_uri).get_run(run_id).info.end_time

    ended = tracker.call("get_run", train_end) if tracker.enabled else None
    tracker.start(run_name=arch_name, run_id=run_id)
    tracker.log_metrics(mlflow_metrics(metrics))
    tracker.set_tags({"evaluated": "true"})
    tracker.call("log_input", lambda: log_split_inputs(prepared_dir))
    for png in ("confusion.png", "history.png", "confusion.csv"):
        tracker.log_artifact(plots_dir / png, "plots")
    metrics["model_uri"] = tracker.call("log_model", lambda: log_pyfunc_model(model_dir))
    tracker.end()
    if ended and tracker.enabled:
        import mlflow

        end_ms = int(ended + (time.time() - t_start) * 1000)
        tracker.call("set_terminated", lambda: mlflow.MlflowClient(tracker.tracking_uri).set_terminated(
            run_id, "FINISHED", end_time=end_ms))
