"""Stage ``evaluate@arch``: validation and test metrics, confusion matrix, plots.

Writes ``metrics/<arch>.json`` (for ``dvc metrics``) and ``plots/<arch>/`` (training curves,
per-row predictions for DVC's confusion template, the confusion matrix as CSV and PNG), and adds
them to the architecture's MLflow run, together with the model itself.
"""

from __future__ import annotations

import json
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
) -> dict[str, Any]:
    """Score the exported model on val and test; write metrics and plots; log them to MLflow."""
    import pandas as pd

    from newsrnn.data import load_splits, texts_of
    from newsrnn.predictor import Predictor
    from newsrnn.tracking import Tracker

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
    metrics = {
        "arch": arch_name,
        "val_accuracy": val_m["accuracy"], "val_macro_f1": val_m["macro_f1"],
        "test_accuracy": test_m["accuracy"], "macro_f1": test_m["macro_f1"],
        "per_class": test_m["per_class"],
        "train_seconds": summary["train_seconds"], "samples_per_second": summary["samples_per_second"],
        "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
        "n_parameters": summary["n_parameters"], "model_sha256": summary["model_sha256"],
        "run_id": summary["run_id"],
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
        tracker.start(run_name=arch_name, run_id=summary["run_id"])
        tracker.log_metrics({"val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"],
                             "macro_f1": metrics["macro_f1"], "val_macro_f1": metrics["val_macro_f1"]})
        for png in ("confusion.png", "history.png", "confusion.csv"):
            tracker.log_artifact(plots_dir / png, "plots")
        from newsrnn.serving import log_pyfunc_model

        metrics["model_uri"] = tracker.call("log_model", lambda: log_pyfunc_model(model_dir))
        tracker.end()
    write_json(metrics_path, metrics)
    print(f"evaluate: {arch_name} val_accuracy {metrics['val_accuracy']:.4f} "
          f"test_accuracy {metrics['test_accuracy']:.4f} macro_f1 {metrics['macro_f1']:.4f}")
    return metrics
