"""Stage ``train@arch``: fit one architecture and export a raw-text ``.keras`` model.

The epoch loop is ours rather than one long ``model.fit`` so that a killed run resumes exactly:
each epoch's shuffle order and dropout seed depend only on (seed, epoch), and after every epoch
the model with its optimizer state, the history and the early-stopping state are saved
atomically to a checkpoint directory outside the DVC output. Re-running the same command
continues from the last completed epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from newsrnn.config import ArchConfig, Config, TrainConfig
from newsrnn.fileio import atomic_dir, atomic_path, write_json

DIVERGED_LOSS = 100 * math.log(4)
TUNABLE = ("batch_size", "embed_dim", "units", "learning_rate", "dropout")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing is exported from such a run."""


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


def effective_arch(cfg: Config, arch_name: str, tuned_path: str | Path | None) -> ArchConfig:
    """The architecture's params with tuned values (if a tuned file exists) laid over them."""
    arch = cfg.arch(arch_name)
    if tuned_path is not None and Path(tuned_path).exists():
        import yaml

        tuned = yaml.safe_load(Path(tuned_path).read_text()) or {}
        params = tuned.get("params") or {}
        unknown = set(params) - set(TUNABLE)
        if unknown:
            raise ValueError(f"{tuned_path}: unknown tuned parameter(s) {sorted(unknown)}")
        arch = replace(arch, **params)
    return arch


def batch_size_of(arch: ArchConfig, train_cfg: TrainConfig) -> int:
    """Architecture batch size, else the training default."""
    return arch.batch_size or train_cfg.batch_size


def train_config_of(arch: ArchConfig, train_cfg: TrainConfig) -> TrainConfig:
    """``train`` with the architecture's own epochs / lr_schedule / patience / batching where it
    sets them."""
    return replace(train_cfg,
                   epochs=arch.epochs or train_cfg.epochs,
                   lr_schedule=arch.lr_schedule or train_cfg.lr_schedule,
                   batching=arch.batching or train_cfg.batching,
                   early_stopping_patience=(train_cfg.early_stopping_patience if arch.early_stopping_patience is None
                                            else arch.early_stopping_patience))


def learning_rate_of(arch: ArchConfig, train_cfg: TrainConfig) -> float:
    """Architecture learning rate, else the training default."""
    return arch.learning_rate or train_cfg.learning_rate


def texts_of(df: Any, arch: ArchConfig) -> Any:
    """The text an architecture reads: title, or title + " " + description."""
    if arch.text == "title":
        return df["title"].to_numpy(dtype=object).astype(str)
    return (df["title"] + " " + df["description"]).to_numpy(dtype=object).astype(str)


def bucket_boundaries(max_length: int | None) -> list[int]:
    """Length buckets for batching: sequences of similar length share a batch."""
    top = max_length or 256
    bounds = [b for b in (8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256)
              if b < top]
    return bounds


class Datasets:
    """Batches for one architecture: vectorized once, shuffled per epoch, grouped by length.

    Texts are vectorized up front in large chunks and kept as one flat id array with row
    offsets. Each epoch, a seeded permutation of row indices is cut into batches of texts of
    similar length (``train.batching: bucket``) or in plain order (``padded``); a batch is
    padded only to its own longest text. Doing this in NumPy costs milliseconds per epoch,
    where per-element tf.data maps cost seconds on two cores.
    """

    def __init__(self, vectorizer: Any, max_length: int | None, train_df: Any, val_df: Any,
                 arch: ArchConfig, train_cfg: TrainConfig, seed: int) -> None:
        import numpy as np
        import tensorflow as tf

        self.tf = tf
        self.train_cfg = train_cfg
        self.seed = seed
        self.batch_size = batch_size_of(arch, train_cfg)
        self.max_length = max_length
        self.bounds = np.array(bucket_boundaries(max_length))

        # A char n-gram front gives ~900 ids per text, padded to the longest text of a chunk:
        # smaller chunks keep that padding (and peak memory) small.
        chunk = 1024 if arch.tokens == "char_ngrams" else 8192

        def encode(df: Any) -> tuple[Any, Any, Any]:
            rows = encode_texts(vectorizer, max_length, texts_of(df, arch), chunk)
            lengths = np.array([len(r) for r in rows], dtype=np.int64)
            return rows, lengths, df["label"].to_numpy().astype(np.int64)

        self._train = encode(train_df)
        self._val = encode(val_df)

    @property
    def train_rows(self) -> list[Any]:
        """The training split's unpadded token-id rows."""
        return self._train[0]

    def batch_indices(self, lengths: Any, batch_size: int, seed: int | None) -> list[Any]:
        """Row indices of each batch for one pass (seeded order, or file order when None)."""
        import numpy as np

        n = len(lengths)
        rng = np.random.default_rng(seed) if seed is not None else None
        order = rng.permutation(n) if rng is not None else np.arange(n)
        if self.train_cfg.batching == "padded":
            return [order[i:i + batch_size] for i in range(0, n, batch_size)]
        bucket = np.searchsorted(self.bounds, lengths[order], side="right")
        batches = []
        for b in np.unique(bucket):
            members = order[bucket == b]
            batches.extend(members[i:i + batch_size] for i in range(0, len(members), batch_size))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def steps_per_epoch(self) -> int:
        """Training batches per epoch (bucketing leaves a few part-filled batches)."""
        n = len(self.batch_indices(self._train[1], self.batch_size, self.seed))
        return min(n, self.train_cfg.max_steps_per_epoch or n)

    def _dataset(self, data: tuple[Any, Any, Any], batches: list[Any]) -> Any:
        tf = self.tf
        rows, lengths, labels = data

        def generate() -> Any:
            for idx in batches:
                yield pad_rows(rows, lengths, idx), labels[idx]

        spec = (tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64))
        ds = tf.data.Dataset.from_generator(generate, output_signature=spec)
        # A known length lets Keras count steps (and not warn that the input "ran out").
        return ds.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(4)

    def train(self, epoch: int) -> Any:
        """The training batches of one epoch; the order depends only on (seed, epoch)."""
        seed = self.seed + epoch if self.train_cfg.shuffle else None
        batches = self.batch_indices(self._train[1], self.batch_size, seed)
        if self.train_cfg.max_steps_per_epoch:
            batches = batches[: self.train_cfg.max_steps_per_epoch]
        return self._dataset(self._train, batches)

    def val(self) -> Any:
        """Validation batches, grouped by length like training batches.

        Without masking, an RNN reads padding as input; padding a short text to the longest in a
        large batch would score it on something training never showed it.
        """
        return self._dataset(self._val, self.batch_indices(self._val[1], max(256, self.batch_size), None))


def build_front(arch: ArchConfig, vectorizer: Any, vec_config: dict[str, Any]) -> tuple[Any, int | None, int]:
    """What turns an architecture's raw text into ids: (layer, guard max_length, vocab size).

    The shared word vectorizer (``build_vectorizer``'s layer and config), or for ``tokens:
    char_ngrams`` the char n-gram hasher (no vocabulary; its ids run to ``ngram_buckets``).
    """
    if arch.tokens == "char_ngrams":
        from newsrnn.models import char_front, char_front_max_length

        return char_front(arch), char_front_max_length(arch), arch.ngram_buckets + 1
    return vectorizer, vec_config["max_length"], vec_config["vocab_size"]


def encode_texts(vectorizer: Any, max_length: int | None, texts: Any, chunk: int = 8192) -> list[Any]:
    """Unpadded id rows of ``texts`` (never empty), vectorized ``chunk`` texts at a time: a char
    n-gram front pads every row of a chunk to its longest, so it wants small chunks."""
    import tensorflow as tf

    from newsrnn.models import guard_ids

    rows = []
    for start in range(0, len(texts), chunk):
        ids = guard_ids(vectorizer(tf.constant(texts[start:start + chunk])), max_length).numpy()
        rows.extend(r[: max(1, int((r != 0).sum()))] for r in ids)
    return rows


def pad_rows(rows: list[Any], lengths: Any, idx: Any) -> Any:
    """Rows ``idx`` right-padded with 0 to the longest of them: one batch."""
    import numpy as np

    x = np.zeros((len(idx), int(lengths[idx].max())), dtype=np.int64)
    for j, i in enumerate(idx):
        x[j, : lengths[i]] = rows[i]
    return x


def idf_of(arch: ArchConfig, vocab_size: int, data: Datasets) -> Any:
    """The n-gram idf table ``arch`` needs (ngram_weighting tfidf), from the training rows; else None."""
    if arch.ngram_buckets == 0 or arch.ngram_weighting != "tfidf":
        return None
    if arch.tokens == "char_ngrams":
        from newsrnn.models import id_idf

        return id_idf(data.train_rows, arch.ngram_buckets + 1)
    from newsrnn.models import ngram_idf

    return ngram_idf(data.train_rows, vocab_size, arch.ngram_buckets)


def compile_network(network: Any, learning_rate: float, xla: bool = False,
                    train_cfg: TrainConfig | None = None, total_steps: int | None = None) -> None:
    """Adam (AdamW with ``train.weight_decay``) + sparse categorical cross-entropy, accuracy.

    ``train.lr_schedule: cosine`` decays the rate to 5% over ``total_steps`` (all epochs). XLA
    only where asked (GPU).
    """
    import keras

    rate: Any = learning_rate
    if train_cfg is not None and train_cfg.lr_schedule == "cosine":
        if not total_steps:
            raise ValueError("train.lr_schedule cosine needs the number of training steps")
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps, alpha=0.05)
    if train_cfg is not None and train_cfg.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=train_cfg.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    network.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                    jit_compile=xla)


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

    Returns (network with the best weights, history rows, best epoch index).
    """
    import keras

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
        fit = network.fit(data.train(epoch), epochs=1, verbose=0, shuffle=False,
                          callbacks=[keras.callbacks.TerminateOnNaN(), *(callbacks or [])])
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


def load_splits(prepared_dir: str | Path) -> tuple[Any, Any, Any]:
    """The prepared train, val and test DataFrames."""
    import pandas as pd

    from newsrnn.corpus import DataError

    d = Path(prepared_dir)
    out = []
    for name in ("train", "val", "test"):
        p = d / f"{name}.parquet"
        if not p.exists():
            raise DataError(f"{p}: not found; run `newsrnn prepare` first")
        out.append(pd.read_parquet(p))
    return out[0], out[1], out[2]


def gpu_count() -> int:
    """Visible GPUs (0 on this CPU machine)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def prepared_data_sha(prepared_dir: str | Path) -> str:
    """The sha256 naming the fetched data version, as recorded by prepare."""
    summary = Path(prepared_dir) / "summary.json"
    if not summary.exists():
        return "unknown"
    return json.loads(summary.read_text()).get("data_sha256", "unknown")


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
    from newsrnn.config import config_to_dict
    from newsrnn.modelio import save_text_model
    from newsrnn.models import build_network, build_text_model
    from newsrnn.tracking import Tracker, flatten, git_commit
    from newsrnn.vectorize import build_vectorizer, initial_embeddings

    out_dir = Path(out_dir or f"artifacts/models/{arch_name}")
    ckpt = Path(checkpoint_dir or f"artifacts/checkpoints/{arch_name}")
    if tuned_path is None and Path(f"artifacts/tuned/{arch_name}.yaml").exists():
        tuned_path = f"artifacts/tuned/{arch_name}.yaml"
    arch = effective_arch(cfg, arch_name, tuned_path)
    tcfg = train_config_of(arch, cfg.train)
    train_df, val_df, _ = load_splits(prepared_dir)
    if data_sha is None:
        data_sha = prepared_data_sha(prepared_dir)
    # Loaded and verified even when this arch reads characters: the run logs its config.
    words, vec_config = build_vectorizer(vec_dir)
    vectorizer, max_length, vocab_size = build_front(arch, words, vec_config)
    data = Datasets(vectorizer, max_length, train_df, val_df, arch, tcfg, cfg.seed)
    lr = learning_rate_of(arch, cfg.train)

    fingerprint = hashlib.sha256(json.dumps(
        {"arch": config_to_dict(arch), "train": config_to_dict(cfg.train), "seed": cfg.seed,
         "vocab": vec_config["vocab_sha256"], "data": data_sha, "rows": len(train_df)},
        sort_keys=True).encode()).hexdigest()
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
                            "arch.name": arch_name, "batch_size_effective": data.batch_size,
                            "learning_rate_effective": lr, "train_rows": len(train_df),
                            "tuned": bool(tuned_path and Path(tuned_path).exists())})

    with strategy.scope():
        network = build_network(arch, vocab_size, name=f"{arch_name}_network",
                                embeddings=initial_embeddings(arch, vec_dir),
                                idf=idf_of(arch, vocab_size, data))
        compile_network(network, lr, xla=cfg.train.xla and gpu_count() > 0, train_cfg=tcfg,
                        total_steps=data.steps_per_epoch() * tcfg.epochs)

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)

    t0 = time.perf_counter()
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
        "batch_size": data.batch_size, "learning_rate": lr, "params": config_to_dict(arch),
        "n_parameters": int(network.count_params()), "train_rows": len(train_df),
        "run_id": tracker.run_id, "data_sha256": data_sha,
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
