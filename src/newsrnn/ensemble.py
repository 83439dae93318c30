"""Stage ``ensemble``: average the class probabilities of several trained architectures.

Recurrent networks trained on 32k texts disagree on many borderline articles; the mean of their
probabilities is right more often than any one of them. The ensemble is one more candidate
(``artifacts/ensemble``), exported like the others (raw text in, 4 probabilities out), evaluated
on the same splits (``metrics/ensemble.json``) and made champion only if it wins on validation.
With no members listed (``ensemble: []``) the stage writes a "skipped" record and register
ignores it.

Members must share the vectorizer (they do when trained in one pipeline) and read the same text.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from newsrnn.config import ArchConfig, Config
from newsrnn.fileio import atomic_dir
from newsrnn.vectorize import ArtifactError

NAME = "ensemble"


def member_dirs(cfg: Config, models_root: str | Path = "artifacts/models") -> list[Path]:
    """The model directories of ``cfg.ensemble``, each checked to exist."""
    dirs = [Path(models_root) / name for name in cfg.ensemble]
    for d in dirs:
        if not (d / "train.json").exists():
            raise ArtifactError(f"{d}: no trained model; run `newsrnn train {d.name}` first "
                                "(or remove it from `ensemble` in params.yaml)")
    return dirs


def build_ensemble(models: list[Any]) -> Any:
    """One raw-text model from exported text models: shared vectorizer, mean of their networks.

    The networks are wrapped in an inner ``ensemble_network`` (ids -> probabilities), so the
    exported model has the same shape as a single architecture's: vectorizer, guard, network.
    """
    import keras

    first = models[0]
    vocab = first.get_layer("vectorizer").get_vocabulary()
    max_length = first.get_layer("guard_ids").max_length
    for m in models[1:]:
        if m.get_layer("vectorizer").get_vocabulary() != vocab:
            raise ArtifactError(f"{m.layers[-1].name}: trained with another vocabulary; ensemble members "
                                "must share the vectorizer (re-train them in one pipeline run)")
        if m.get_layer("guard_ids").max_length != max_length:
            raise ArtifactError(f"{m.layers[-1].name}: trained with another vectorizer.max_length")
    ids = keras.Input(shape=(None,), dtype="int64", name="token_ids")
    outputs = [m.layers[-1](ids) for m in models]
    network = keras.Model(ids, keras.layers.Average(name="mean_probs")(outputs), name="ensemble_network")

    text = keras.Input(shape=(), dtype="string", name="text")
    guarded = first.get_layer("guard_ids")(first.get_layer("vectorizer")(text))
    return keras.Model(text, network(guarded), name="newsrnn_ensemble")


def ensemble_arch(cfg: Config) -> ArchConfig:
    """What evaluate needs to know of the ensemble: the text its members read."""
    return ArchConfig(text=cfg.arch(cfg.ensemble[0]).text)


def ensemble(cfg: Config, models_root: str | Path = "artifacts/models",
             out_dir: str | Path = "artifacts/ensemble", dirs: list[Path] | None = None) -> dict[str, Any]:
    """Build and save the ensemble model (model.keras, train.json, empty history.json).

    ``dirs`` overrides where the members are (Kubeflow hands them over as artifacts).
    """
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.tracking import Tracker, git_commit

    out_dir = Path(out_dir)
    if not cfg.ensemble:
        with atomic_dir(out_dir) as tmp:
            (tmp / "train.json").write_text(json.dumps({"arch": NAME, "skipped": True}) + "\n")
        print("ensemble: no members listed in params.yaml; skipped")
        return {"arch": NAME, "skipped": True}
    t0 = time.perf_counter()
    dirs = dirs if dirs is not None else member_dirs(cfg, models_root)
    summaries = [json.loads((d / "train.json").read_text()) for d in dirs]
    model = build_ensemble([load_text_model(d) for d in dirs])
    tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment, cfg.mlflow.enabled)
    tracker.start(run_name=NAME, tags={"arch": NAME, "git_commit": git_commit(), "stage": "ensemble",
                                       "data_sha256": summaries[0].get("data_sha256", "unknown")})
    members = [s["arch"] for s in summaries]
    tracker.log_params({"members": ",".join(members),
                        **{f"member.{s['arch']}.run_id": s.get("run_id") or "" for s in summaries},
                        **{f"member.{s['arch']}.model_sha256": s["model_sha256"] for s in summaries}})
    summary = {
        "arch": NAME, "members": members, "epochs": 0, "best_epoch": 0,
        "train_seconds": sum(s["train_seconds"] for s in summaries),
        "samples_per_second": 0.0, "n_parameters": int(model.layers[-1].count_params()),
        "train_rows": summaries[0].get("train_rows"), "run_id": tracker.run_id,
        "data_sha256": summaries[0].get("data_sha256"),
    }
    with atomic_dir(out_dir) as tmp:
        summary["model_sha256"] = save_text_model(model, tmp)
        (tmp / "history.json").write_text("[]\n")
        (tmp / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    tracker.end()
    print(f"ensemble: mean of {', '.join(members)} ({time.perf_counter() - t0:.1f}s) -> {out_dir}")
    return summary


def run_stage(cfg: Config, models_root: str | Path = "artifacts/models", out_dir: str | Path = "artifacts/ensemble",
              prepared_dir: str | Path = "data/prepared", metrics_path: str | Path = f"metrics/{NAME}.json",
              plots_dir: str | Path = f"plots/{NAME}", dirs: list[Path] | None = None) -> dict[str, Any]:
    """``newsrnn ensemble``: build, then evaluate like any architecture (or record the skip)."""
    from newsrnn.evaluate import evaluate
    from newsrnn.fileio import write_json

    built = ensemble(cfg, models_root, out_dir, dirs)
    if built.get("skipped"):
        write_json(metrics_path, {"arch": NAME, "skipped": True})
        return built
    return evaluate(cfg, NAME, prepared_dir, model_dir=out_dir, metrics_path=metrics_path, plots_dir=plots_dir)
