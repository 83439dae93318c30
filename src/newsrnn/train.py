"""Stage ``train@arch``: fit one architecture and export a raw-text ``.keras`` model.

The effective settings come from ``config.resolve`` (params + tuned file), the compiled network
from ``nn.trainable.build_trainable`` (the builder tuning uses too), the epochs from
``fit.fit_epochs`` (resumable from ``artifacts/checkpoints/<arch>``). When the tuning trial that
the tuned file chose trained these very settings on this data (same fingerprint), its network
(``artifacts/tuned/<arch>/model``) is exported instead of repeating the run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from newsrnn.config import Config
from newsrnn.errors import TrainingDiverged
from newsrnn.fileio import atomic_dir, write_json


@dataclass
class TrainResult:
    """Summary of one training run."""

    arch: str
    epochs: int
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float
    samples_per_second: float
    run_id: str | None


def gpu_count() -> int:
    """Visible GPUs (0 on this CPU machine)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def train(
    cfg: Config,
    arch_name: str,
    prepared_dir: str | Path = "data/prepared",
    vec_dir: str | Path = "artifacts/vectorizer",
    tuned_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    data_sha: str | None = None,
) -> TrainResult:
    """Train ``arch_name`` and write ``artifacts/models/<arch>/`` (model.keras, history, run id)."""
    from newsrnn.runtime import setup_runtime

    strategy = setup_runtime(cfg.seed, cfg.train.deterministic, cfg.train.mixed_precision)
    from newsrnn.config import config_to_dict, resolve, tuned_dir
    from newsrnn.data import Datasets, build_front, char_idf_of, idf_of, load_splits, prepared_data_sha
    from newsrnn.fit import fit_epochs, load_run, run_fingerprint
    from newsrnn.modelio import save_text_model
    from newsrnn.nn.networks import build_text_model
    from newsrnn.nn.trainable import build_trainable
    from newsrnn.tracking import Tracker, flatten, git_commit
    from newsrnn.vectorize import build_vectorizer, initial_embeddings

    out_dir = Path(out_dir or f"artifacts/models/{arch_name}")
    ckpt = Path(checkpoint_dir or f"artifacts/checkpoints/{arch_name}")
    if tuned_path is None and Path(f"artifacts/tuned/{arch_name}.yaml").exists():
        tuned_path = f"artifacts/tuned/{arch_name}.yaml"
    settings = resolve(cfg, arch_name, tuned_path)
    arch, tcfg = settings.arch, settings.train
    train_df, val_df, _ = load_splits(prepared_dir)
    if data_sha is None:
        data_sha = prepared_data_sha(prepared_dir)
    # Loaded and verified even when this arch reads characters: the run logs its config.
    words, vec_config = build_vectorizer(vec_dir)
    vectorizer, max_length, vocab_size = build_front(arch, words, vec_config)
    lr = settings.learning_rate

    fingerprint = run_fingerprint(settings, vec_config["vocab_sha256"], data_sha, len(train_df))
    # The tuning trial that trained exactly these settings on this data left its network here.
    reused = (load_run(tuned_dir(tuned_path) / "model", fingerprint) if tuned_path is not None else None)
    # Texts are encoded only for a run that trains (a reused network needs none: seconds of
    # each train stage, most for the character n-gram models).
    data = None if reused is not None else Datasets(vectorizer, max_length, train_df, val_df, settings)
    tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment, cfg.mlflow.enabled)
    run_file = ckpt / "run.json"
    resumed_run = None
    if run_file.exists():
        saved = json.loads(run_file.read_text())
        resumed_run = saved["run_id"] if saved.get("fingerprint") == fingerprint else None
    tracker.start(run_name=arch_name, run_id=resumed_run,
                  tags={"arch": arch_name, "git_commit": git_commit(), "data_sha256": data_sha,
                        "stage": "train"})
    if tracker.run_id and not resumed_run:
        ckpt.mkdir(parents=True, exist_ok=True)
        write_json(run_file, {"run_id": tracker.run_id, "fingerprint": fingerprint})
        tracker.log_params({**flatten({"arch": config_to_dict(arch)}),
                            **flatten({"train": config_to_dict(cfg.train)}),
                            **flatten({"vectorizer": vec_config}),
                            "arch.name": arch_name, "batch_size_effective": settings.batch_size,
                            "learning_rate_effective": lr, "train_rows": len(train_df),
                            "tuned": settings.tuned,
                            "reused_trial": reused[3].get("trial") if reused else "none"})

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)

    t0 = time.perf_counter()
    if reused is not None:
        network, history, best_epoch, info = reused
        print(f"train: {arch_name}: reusing the network of tuning trial {info.get('trial')} "
              f"(same settings, data and seed: the run this stage would make)")
        for i, row in enumerate(history):
            log_epoch(i, row)
    else:
        network = build_trainable(settings, vocab_size, data.steps_per_epoch(),
                                  embeddings=initial_embeddings(arch, vec_dir), idf=idf_of(arch, vocab_size, data),
                                  xla=cfg.train.xla and gpu_count() > 0, strategy=strategy,
                                  char_idf=char_idf_of(arch, data), word_length=data.word_length)
        try:
            network, history, best_epoch = fit_epochs(network, data, tcfg.epochs,
                                                      tcfg.early_stopping_patience, cfg.seed,
                                                      on_epoch_end=log_epoch, checkpoint_dir=ckpt,
                                                      fingerprint=fingerprint)
        except TrainingDiverged:
            tracker.end("FAILED")
            raise
    wall = time.perf_counter() - t0
    train_seconds = sum(r["epoch_seconds"] for r in history)
    sps = len(train_df) * len(history) / train_seconds if train_seconds else 0.0

    text_model = build_text_model(vectorizer, network, max_length)
    summary = {
        "arch": arch_name, "epochs": len(history), "best_epoch": best_epoch + 1,
        "best_val_accuracy": history[best_epoch]["val_accuracy"],
        "train_seconds": train_seconds, "wall_seconds": wall, "samples_per_second": sps,
        "batch_size": settings.batch_size, "learning_rate": lr, "params": config_to_dict(arch),
        "n_parameters": int(network.count_params()), "train_rows": len(train_df),
        "run_id": tracker.run_id, "data_sha256": data_sha,
        # The tuning trial whose network this is (train did not repeat that run), else null.
        "reused_trial": reused[3].get("trial") if reused is not None else None,
    }
    with atomic_dir(out_dir) as tmp:
        digest = save_text_model(text_model, tmp)
        (tmp / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        summary["model_sha256"] = digest
        (tmp / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    tracker.log_metrics({"train_seconds": train_seconds, "samples_per_second": sps,
                         "best_val_accuracy": summary["best_val_accuracy"]})
    tracker.end()
    shutil.rmtree(ckpt, ignore_errors=True)  # finished: nothing left to resume
    print(f"train: {arch_name} best val_accuracy {summary['best_val_accuracy']:.4f} "
          f"after {len(history)} epoch(s), {train_seconds:.1f}s -> {out_dir}")
    return TrainResult(arch_name, len(history), best_epoch + 1, summary["best_val_accuracy"],
                       train_seconds, sps, tracker.run_id)
