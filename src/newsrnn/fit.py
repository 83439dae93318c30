"""The resumable epoch loop, shared by ``train`` and every tuning trial.

The loop is ours rather than one long ``model.fit`` so that a killed run resumes exactly: each
epoch's shuffle order and dropout seed depend only on (seed, epoch), and after every epoch the
model with its optimizer state, the history and the early-stopping state are saved atomically to
a checkpoint directory. Re-running the same command continues from the last completed epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsrnn.config import Settings
from newsrnn.data import Datasets
from newsrnn.errors import TrainingDiverged
from newsrnn.fileio import atomic_dir, atomic_path, write_json
from newsrnn.progress import epoch_bar

DIVERGED_LOSS = 100 * math.log(4)


_EFFECTIVE_ELSEWHERE = ("tune_trials", "batch_size", "learning_rate", "epochs", "lr_schedule",
                        "early_stopping_patience", "batching")


def run_fingerprint(settings: Settings, vocab_sha: str, data_sha: str, rows: int) -> str:
    """What makes two training runs the same run: effective settings, vocabulary, data, rows.

    ``train`` keys its checkpoints with it, and reuses a tuning trial's network only when the
    trial's fingerprint is its own.
    """
    from newsrnn.config import config_to_dict

    # tune_trials is a budget, not a setting. The per-architecture overrides of train.* (null =
    # the train value) count by their effective values, in ``train`` and batch_size / rate below:
    # a tuning trial spells out the values a section leaves null, and is still the same run.
    arch = {k: v for k, v in config_to_dict(settings.arch).items() if k not in _EFFECTIVE_ELSEWHERE}
    return hashlib.sha256(json.dumps(
        {"arch": arch, "train": config_to_dict(settings.train), "seed": settings.seed,
         "batch_size": settings.batch_size, "learning_rate": settings.learning_rate,
         "vocab": vocab_sha, "data": data_sha, "rows": rows}, sort_keys=True).encode()).hexdigest()


def save_run(dest: Path, network: Any, history: list[dict[str, float]], best_epoch: int, **facts: Any) -> None:
    """A finished run (network with its best weights, history, best epoch) as a directory that
    ``load_run`` reads back; replaced atomically."""
    with atomic_dir(dest) as tmp:
        network.save(tmp / "network.keras")
        write_json(tmp / "run.json", {"history": history, "best_epoch": best_epoch, **facts})


def load_run(src: Path, fingerprint: str) -> tuple[Any, list[dict[str, float]], int, dict[str, Any]] | None:
    """(network, history, best epoch, facts) saved by ``save_run`` for ``fingerprint``, else None."""
    import keras

    info_path = src / "run.json"
    if not info_path.is_file() or not (src / "network.keras").is_file():
        return None
    info = json.loads(info_path.read_text())
    if info.get("fingerprint") != fingerprint:
        return None
    network = keras.saving.load_model(src / "network.keras", safe_mode=True)
    return network, info["history"], int(info["best_epoch"]), info


def fit_epochs(
    network: Any,
    data: Datasets,
    epochs: int,
    patience: int,
    seed: int,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    callbacks: list[Any] | None = None,
) -> tuple[Any, list[dict[str, float]], int]:
    """Train epoch by epoch with early stopping on val accuracy; resume from ``checkpoint_dir``.

    Returns (network with the best weights, history rows, best epoch index). An architecture
    with ``solver: lbfgs`` is fitted by ``convex.fit_convex`` instead (one step, no epochs).
    """
    import keras

    if data.arch.solver == "lbfgs":
        from newsrnn.convex import fit_convex

        network, history, best_epoch = fit_convex(network, data, data.arch.l2_c)
        if on_epoch_end is not None:
            on_epoch_end(0, history[0])
        return network, history, best_epoch

    history: list[dict[str, float]] = []
    best_acc, best_epoch, wait, start = -1.0, -1, 0, 0
    best_weights = None
    state_path = checkpoint_dir / "state.json" if checkpoint_dir else None
    state = json.loads(state_path.read_text()) if state_path is not None and state_path.exists() else None
    if state is not None and state.get("fingerprint") != fingerprint:
        # Left by a run with other settings or data: resuming it would mix two experiments.
        print(f"train: ignoring checkpoint in {checkpoint_dir} from a run with other settings")
        for name in ("state.json", "last.keras", "best.keras"):
            (checkpoint_dir / name).unlink(missing_ok=True)
        state = None
    if state is not None:
        network = keras.saving.load_model(checkpoint_dir / "last.keras", safe_mode=True)
        best_net = keras.saving.load_model(checkpoint_dir / "best.keras", safe_mode=True, compile=False)
        best_weights = best_net.get_weights()
        history, best_acc, best_epoch, wait = (state["history"], state["best_acc"],
                                               state["best_epoch"], state["wait"])
        start = state["epoch"] + 1
        print(f"train: resuming after epoch {start} from {checkpoint_dir}")

    for epoch in range(start, epochs):
        if best_epoch >= 0 and wait > patience:
            break
        keras.utils.set_random_seed(seed + 1000 * epoch)
        t0 = time.perf_counter()
        bar = epoch_bar(network.name.removesuffix("_network"), epoch, epochs, data.steps_per_epoch())
        fit = network.fit(data.train(epoch), epochs=1, verbose=0, shuffle=False,
                          callbacks=[keras.callbacks.TerminateOnNaN(), *(callbacks or []), *bar])
        fit_s = time.perf_counter() - t0
        loss = float(fit.history["loss"][-1])
        # Chance-level cross-entropy is ln 4 ~ 1.39; a loss 100x that has diverged even if finite.
        if not math.isfinite(loss) or network.stop_training or loss > DIVERGED_LOSS:
            raise TrainingDiverged(f"loss became {loss:.4g} in epoch {epoch + 1}: training diverged; "
                                   "lower the learning rate")
        val_loss, val_acc = network.evaluate(data.val(), verbose=0)
        row = {"epoch": epoch + 1, "loss": loss, "accuracy": float(fit.history["accuracy"][-1]),
               "val_loss": float(val_loss), "val_accuracy": float(val_acc), "epoch_seconds": fit_s}
        history.append(row)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f} acc {row['accuracy']:.4f} "
              f"val_acc {val_acc:.4f} ({fit_s:.1f}s)", flush=True)
        if val_acc > best_acc:
            best_acc, best_epoch, wait = float(val_acc), epoch, 0
            best_weights = network.get_weights()
        else:
            wait += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(checkpoint_dir / "last.keras") as tmp:
                network.save(tmp.with_suffix(".keras"))
                tmp.with_suffix(".keras").replace(tmp)
            if best_epoch == epoch:
                shutil.copyfile(checkpoint_dir / "last.keras", checkpoint_dir / ".best.tmp")
                (checkpoint_dir / ".best.tmp").replace(checkpoint_dir / "best.keras")
            write_json(state_path, {"epoch": epoch, "history": history, "best_acc": best_acc,
                                    "best_epoch": best_epoch, "wait": wait, "fingerprint": fingerprint})
        if wait > patience:
            break
    if best_weights is not None:
        network.set_weights(best_weights)
    return network, history, best_epoch
