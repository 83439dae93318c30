"""The benchmark harness behind ``newsrnn bench``: the notebook's recipe and newsrnn's training,
side by side, in one run. It lives beside the results it writes, outside the library.

For each architecture two child processes run one after the other on the same rows:

- ``notebook``: a Keras 3 port of the teaching notebook (vocabulary adapted on the first 2,000
  titles, max_tokens 20000, the vectorizer inside the model so every batch is padded to its
  longest text, batches of 16 (8 for ``lstm``), Adam defaults, one epoch over data shuffled
  once). Its test accuracy is the target newsrnn has to reach.
- ``newsrnn``: the library's own training, built exactly as ``newsrnn train`` builds it
  (``config.resolve``, ``nn.trainable.build_trainable``, ``data.Datasets``, ``fit.fit_epochs``).
  A Keras callback pauses the clock, scores the test split every
  ``eval_fraction`` of an epoch until the target is reached, and resumes the clock, so the time
  to reach the notebook's accuracy counts training only.

Each child reports its own peak RSS (``getrusage(RUSAGE_SELF)``), so memory is per side and per
architecture. The parent also times single-text and batch prediction through
:class:`newsrnn.predictor.Predictor`, ``newsrnn --help`` and a no-op ``dvc repro``, writes one JSON
file under ``benchmarks/results/`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from newsrnn.errors import BenchError

NOTEBOOK_ARCHS = ("rnn_title", "rnn", "lstm", "bilstm")
# gru, cnn, wide and wide_char have no notebook counterpart; they are held to the notebook's single-layer LSTM.
TARGET_OF = {"gru": "lstm", "cnn": "lstm", "wide": "lstm", "wide_char": "lstm"}
NOTEBOOK_VOCAB = 20000
NOTEBOOK_ADAPT_TITLES = 2000
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
             "KERAS_BACKEND": "tensorflow", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; ``values`` need not be sorted."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den, or None when either is missing or den is 0."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def machine_info() -> dict[str, Any]:
    """CPU model, core count, load average and library versions, for the results file."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


# --------------------------------------------------------------------------- notebook side


def notebook_texts(df: Any, arch: str) -> Any:
    """The notebook reads raw titles for rnn_title and raw title + " " + description otherwise."""
    if arch == "rnn_title":
        return df["title"].to_numpy(dtype=object).astype(str)
    return (df["title"] + " " + df["description"]).to_numpy(dtype=object).astype(str)


def notebook_batch_size(arch: str) -> int:
    """The notebook's batch size: 8 for its LSTM, 16 otherwise."""
    return 8 if arch == "lstm" else 16


def build_notebook_model(arch: str, vectorizer: Any) -> Any:
    """The notebook's network for ``arch`` with its exact layer sizes, vectorizer in front."""
    import keras

    layers = {
        "rnn_title": [keras.layers.Embedding(NOTEBOOK_VOCAB, 64), keras.layers.SimpleRNN(16)],
        "rnn": [keras.layers.Embedding(NOTEBOOK_VOCAB, 64, mask_zero=True), keras.layers.SimpleRNN(16)],
        "lstm": [keras.layers.Embedding(NOTEBOOK_VOCAB, 64), keras.layers.LSTM(8)],
        "bilstm": [keras.layers.Embedding(NOTEBOOK_VOCAB, 128, mask_zero=True),
                   keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True)),
                   keras.layers.Bidirectional(keras.layers.LSTM(64))],
    }[arch]
    text = keras.Input(shape=(), dtype="string")
    x = vectorizer(text)
    for layer in layers:
        x = layer(x)
    out = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(text, out, name=f"notebook_{arch}")


def run_notebook(arch: str, work: Path, seed: int, max_train_rows: int | None) -> dict[str, Any]:
    """Train the notebook's recipe for one epoch; return time, throughput and test accuracy."""
    import numpy as np
    import pandas as pd

    from newsrnn.runtime import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    train = pd.read_parquet(work / "raw" / "train.parquet")
    test = pd.read_parquet(work / "raw" / "test.parquet")
    # Shuffled once (the raw file is sorted by nothing useful, but the notebook's tfds split is
    # already shuffled), then capped like newsrnn's prepare caps.
    train = train.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if max_train_rows is not None:
        train = train.head(max_train_rows)
    bs = notebook_batch_size(arch)
    vectorizer = keras.layers.TextVectorization(max_tokens=NOTEBOOK_VOCAB)
    vectorizer.adapt(train["title"].head(NOTEBOOK_ADAPT_TITLES).to_numpy(dtype=object).astype(str))
    model = build_notebook_model(arch, vectorizer)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["acc"], optimizer="adam")
    x, y = notebook_texts(train, arch), train["label"].to_numpy()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(bs)
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    epoch_s = time.perf_counter() - t0
    # Scored with the notebook's own batch size: without masking, padding changes predictions.
    test_ds = tf.data.Dataset.from_tensor_slices((notebook_texts(test, arch), test["label"].to_numpy()))
    test_ds = test_ds.batch(bs)
    t1 = time.perf_counter()
    probs = model.predict(test_ds, verbose=0)
    acc = float(np.mean(probs.argmax(-1) == test["label"].to_numpy()))
    return {"arch": arch, "epoch_s": epoch_s, "samples_per_s": len(train) / epoch_s, "train_rows": len(train),
            "batch_size": bs, "test_accuracy": acc, "test_eval_s": time.perf_counter() - t1,
            "vocab_size": len(vectorizer.get_vocabulary()), "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------- newsrnn side


def _time_to_accuracy_callback(network: Any, test_ds: Any, n_test: int, target: float | None,
                               every: int, steps: int, setup_s: float = 0.0) -> Any:
    """A callback that keeps a training-only clock and scores the test split every ``every`` batches.

    Scoring pauses the clock; it stops once ``target`` is reached (or at once when no target).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def classes(ids: Any) -> Any:
        return tf.argmax(network(ids, training=False), axis=-1)

    class TimeToAccuracy(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.train_s = setup_s  # training seconds so far (pipeline set-up, finished fits)
            self.epoch_train_s: list[float] = []
            self.reached_s: float | None = None
            self.reached_at: float | None = None  # in epochs
            self.curve: list[tuple[float, float, float]] = []  # (epochs, train seconds, test acc)
            self.eval_s = 0.0
            self.epoch = 0
            self.batches = steps  # estimate until the first epoch has been counted

        def on_train_begin(self, logs: Any = None) -> None:
            self._t0 = time.perf_counter()
            self._paused = 0.0
            self._batch_in_epoch = 0

        def _now(self) -> float:
            return self.train_s + time.perf_counter() - self._t0 - self._paused

        def _check(self) -> None:
            if target is None or self.reached_s is not None:
                return
            t_pause = time.perf_counter()
            elapsed = self._now()
            correct = 0
            for ids, labels in test_ds:
                correct += int(np.sum(classes(ids).numpy() == labels.numpy()))
            acc = correct / n_test
            at = self.epoch + self._batch_in_epoch / max(self.batches, self._batch_in_epoch, 1)
            self.curve.append((round(at, 3), round(elapsed, 3), round(acc, 5)))
            if acc >= target:
                self.reached_s, self.reached_at = elapsed, at
            spent = time.perf_counter() - t_pause
            self._paused += spent
            self.eval_s += spent

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self._batch_in_epoch = batch + 1
            if (batch + 1) % every == 0:
                self._check()

        def on_train_end(self, logs: Any = None) -> None:
            if self._batch_in_epoch % every:
                self._check()
            done = time.perf_counter() - self._t0 - self._paused
            self.train_s += done
            self.epoch_train_s.append(done)
            self.batches = self._batch_in_epoch
            self.epoch += 1

    return TimeToAccuracy()


def test_batches(vectorizer: Any, max_length: int | None, texts: Any, labels: Any, batch: int = 512) -> Any:
    """Test ids sorted by length and padded per batch (scoring only: order does not matter)."""
    import numpy as np
    import tensorflow as tf

    from newsrnn.data import encode_texts, pad_rows

    rows = encode_texts(vectorizer, max_length, texts, chunk=1024)
    lengths = np.array([len(r) for r in rows])
    order = np.argsort(lengths, kind="stable")
    labels = np.asarray(labels)
    return [(tf.constant(pad_rows(rows, lengths, order[start:start + batch])),
             tf.constant(labels[order[start:start + batch]])) for start in range(0, len(order), batch)]


def run_newsrnn(cfg: Any, arch_name: str, work: Path, target: float | None, eval_fraction: float = 0.1,
                arch_overrides: dict[str, Any] | None = None,
                model_out: Path | None = None) -> dict[str, Any]:
    """Train ``arch_name`` with newsrnn's library exactly as ``newsrnn train`` does (no tracking).

    Returns epoch times (training only), the time to first reach ``target`` test accuracy, the
    final val and test accuracy of the best-val weights, and peak RSS.
    """
    from newsrnn.runtime import setup_runtime

    setup_runtime(cfg.seed, cfg.train.deterministic, cfg.train.mixed_precision)
    import numpy as np

    from newsrnn.config import resolve
    from newsrnn.data import Datasets, build_front, char_idf_of, idf_of, load_splits, texts_of
    from newsrnn.fit import fit_epochs
    from newsrnn.nn.networks import build_text_model
    from newsrnn.nn.trainable import build_trainable
    from newsrnn.vectorize import build_vectorizer, initial_embeddings

    settings = resolve(cfg, arch_name, overrides=arch_overrides)
    arch, tcfg = settings.arch, settings.train
    train_df, val_df, test_df = load_splits(work / "prepared")
    vectorizer, max_length, vocab_size = build_front(arch, *build_vectorizer(work / "vectorizer"))
    t_setup = time.perf_counter()
    data = Datasets(vectorizer, max_length, train_df, val_df, settings)
    # Counted as training time: a pipeline that vectorizes up front must not hide that cost.
    setup_s = time.perf_counter() - t_setup
    lr = settings.learning_rate
    network = build_trainable(settings, vocab_size, data.steps_per_epoch(),
                              embeddings=initial_embeddings(arch, work / "vectorizer"),
                              idf=idf_of(arch, vocab_size, data), char_idf=char_idf_of(arch, data),
                              word_length=data.word_length)
    test_ds = test_batches(vectorizer, max_length, texts_of(test_df, arch), test_df["label"].to_numpy())
    steps = max(1, -(-len(train_df) // data.batch_size))
    every = max(1, int(steps * eval_fraction))
    clock = _time_to_accuracy_callback(network, test_ds, len(test_df), target, every, steps, setup_s)
    network, history, best_epoch = fit_epochs(network, data, tcfg.epochs, tcfg.early_stopping_patience,
                                              cfg.seed, callbacks=[clock])
    correct = 0
    for ids, labels in test_ds:
        correct += int(np.sum(network(ids, training=False).numpy().argmax(-1) == labels.numpy()))
    test_acc = correct / len(test_df)
    if not clock.epoch_train_s:  # solver lbfgs: no Keras epochs ran, one fit instead
        clock.epoch_train_s = [r["epoch_seconds"] for r in history]
        clock.train_s += sum(clock.epoch_train_s)
    first = clock.epoch_train_s[0]
    mean = sum(clock.epoch_train_s) / len(clock.epoch_train_s)
    result = {
        "arch": arch_name, "train_rows": len(train_df), "batch_size": data.batch_size, "learning_rate": lr,
        "epochs": len(history), "best_epoch": best_epoch + 1, "epoch_train_s": clock.epoch_train_s,
        "first_epoch_s": first, "mean_epoch_s": mean, "samples_per_s": len(train_df) / mean,
        "train_s": clock.train_s, "data_setup_s": setup_s, "target_accuracy": target,
        "time_to_target_s": clock.reached_s,
        "target_reached_at_epoch": clock.reached_at, "test_curve": clock.curve,
        "val_accuracy": history[best_epoch]["val_accuracy"], "test_accuracy": test_acc,
        "val_history": [round(r["val_accuracy"], 5) for r in history],
        "n_parameters": int(network.count_params()), "peak_rss_mb": peak_rss_mb(),
    }
    if model_out is not None:
        from newsrnn.modelio import save_text_model

        model_out.mkdir(parents=True, exist_ok=True)
        save_text_model(build_text_model(vectorizer, network, max_length), model_out)
    return result


# --------------------------------------------------------------------------- data, predict, overheads


def prepare_data(cfg: Any, data_dir: Path, work: Path, max_train_rows: int | None) -> dict[str, Any]:
    """fetch -> prepare -> vectorize into ``work`` with the library's own stage functions."""
    from newsrnn.fetch import fetch
    from newsrnn.prepare import prepare
    from newsrnn.vectorize import vectorize

    cap = max_train_rows if max_train_rows is not None else cfg.data.max_train_rows
    data_cfg = replace(cfg.data, sources=("local",), local_dir=str(data_dir), max_train_rows=cap)
    os.environ.pop("NEWSRNN_DATA_DIR", None)
    t0 = time.perf_counter()
    fetch(data_cfg, work / "raw", work / "download")
    t1 = time.perf_counter()
    prep = prepare(data_cfg, cfg.seed, work / "raw", work / "prepared")
    t2 = time.perf_counter()
    vectorize(cfg.vectorizer, work / "prepared", work / "vectorizer")
    t3 = time.perf_counter()
    return {"fetch_s": t1 - t0, "prepare_s": t2 - t1, "vectorize_s": t3 - t2, "train_rows": prep.train_rows,
            "val_rows": prep.val_rows, "test_rows": prep.test_rows, "max_train_rows": data_cfg.max_train_rows,
            "peak_rss_mb": peak_rss_mb()}


def run_ensemble(cfg: Any, work: Path, member_dirs: list[Path], model_out: Path) -> dict[str, Any]:
    """The ``ensemble`` of the bench's trained models: val and test accuracy, saved like a model."""
    import numpy as np

    from newsrnn.data import load_splits, texts_of
    from newsrnn.ensemble import build_ensemble
    from newsrnn.modelio import load_text_model, save_text_model
    from newsrnn.predictor import Predictor

    model = build_ensemble([load_text_model(d) for d in member_dirs])
    model_out.mkdir(parents=True, exist_ok=True)
    save_text_model(model, model_out)
    _, val_df, test_df = load_splits(work / "prepared")
    arch = cfg.candidate("ensemble")
    pred = Predictor(model, max_batch=len(test_df) + len(val_df))
    acc = {}
    for name, df in (("val", val_df), ("test", test_df)):
        probs = pred.predict_proba(list(texts_of(df, arch)))
        acc[name] = float(np.mean(probs.argmax(1) == df["label"].to_numpy()))
    return {"val_accuracy": acc["val"], "test_accuracy": acc["test"], "peak_rss_mb": peak_rss_mb()}


def run_predict(model_dir: Path, work: Path, n_single: int = 300, seed: int = 0) -> dict[str, Any]:
    """Single-text latency (p50/p99) and batch throughput through the in-process Predictor.

    Timed as a server holds it (``xla=True``, warmed up, warm-up time reported); the plain
    graph path a one-shot ``newsrnn predict`` takes is timed too, as ``graph_p50_ms``.
    """
    import random

    import pandas as pd

    from newsrnn.predictor import Predictor

    test = pd.read_parquet(work / "raw" / "test.parquet")
    texts = (test["title"] + " " + test["description"]).tolist()
    t0 = time.perf_counter()
    predictor = Predictor.from_path(model_dir, xla=True)
    load_s = time.perf_counter() - t0
    warmup_s = predictor.warmup()
    plain = Predictor(predictor.model)

    def single_latencies(pred: Any) -> list[float]:
        rng = random.Random(seed)
        for _ in range(20):  # trace the serving function and warm caches
            pred.predict([rng.choice(texts)])
        lat = []
        for _ in range(n_single):
            text = rng.choice(texts)
            t = time.perf_counter()
            pred.predict([text])
            lat.append((time.perf_counter() - t) * 1000)
        return lat

    lat = single_latencies(predictor)
    graph_lat = single_latencies(plain)
    predictor.predict_proba(texts[:1024])
    t = time.perf_counter()
    reps = 3
    for _ in range(reps):
        predictor.predict_proba(texts)
    batch_s = time.perf_counter() - t
    return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "mean_ms": sum(lat) / len(lat),
            "xla": predictor.xla, "warmup_s": warmup_s, "threads": predictor.threads,
            "graph_p50_ms": percentile(graph_lat, 50), "graph_p99_ms": percentile(graph_lat, 99),
            "batch_texts_per_s": reps * len(texts) / batch_s, "batch_texts": len(texts), "load_s": load_s,
            "n_single": n_single, "peak_rss_mb": peak_rss_mb()}


def time_help(runs: int = 5) -> dict[str, Any]:
    """Wall time of ``newsrnn --help`` as a fresh process (median and min of ``runs``)."""
    exe = Path(sys.executable).parent / "newsrnn"
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "newsrnn", "--help"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **CHILD_ENV})
        times.append(time.perf_counter() - t)
    return {"median_s": percentile(times, 50), "min_s": min(times), "runs": runs}


def _small_params(root: Path) -> dict[str, Any]:
    import yaml

    p = yaml.safe_load((root / "params.yaml").read_text())
    p["data"]["max_train_rows"] = 400
    p["vectorizer"].update(max_tokens=500, max_length=32)
    p["train"].update(epochs=1, batch_size=32)
    p["tune"]["n_trials"] = 0
    p["mlflow"]["enabled"] = False
    for arch in p["architectures"].values():
        arch.update(embed_dim=8, units=4)
    return p


def time_dvc_noop(root: Path, data_dir: Path, work: Path) -> dict[str, Any]:
    """Build a temporary git + DVC project with this pipeline and small params, run ``dvc repro``
    once to fill it, then time a second, no-op ``dvc repro``."""
    import yaml

    bindir = Path(sys.executable).parent
    env = {**os.environ, **CHILD_ENV, "NEWSRNN_DATA_DIR": str(data_dir),
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    proj = work / "dvcproj"
    proj.mkdir(parents=True)
    shutil.copytree(root / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(root / name, proj / name)
    (proj / "params.yaml").write_text(yaml.safe_dump(_small_params(root), sort_keys=False))

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)

    for cmd in (("git", "init", "-q"), ("git", "config", "user.email", "bench@example.com"),
                ("git", "config", "user.name", "bench"), ("dvc", "init", "-q"), ("git", "add", "-A"),
                ("git", "commit", "-qm", "bench")):
        r = run(*cmd)
        if r.returncode:
            return {"error": f"{' '.join(cmd)} failed: {r.stderr[-500:]}"}
    t = time.perf_counter()
    r = run("dvc", "repro")
    first_s = time.perf_counter() - t
    if r.returncode:
        return {"error": f"first dvc repro failed: {(r.stderr or r.stdout)[-800:]}", "first_repro_s": first_s}
    times = []
    for _ in range(2):
        t = time.perf_counter()
        r = run("dvc", "repro")
        times.append(time.perf_counter() - t)
        if r.returncode:
            return {"error": f"no-op dvc repro failed: {r.stderr[-500:]}"}
    ran = [ln for ln in r.stdout.splitlines() if ln.startswith("Running stage")]
    return {"noop_s": min(times), "noop_runs_s": times, "first_repro_s": first_s, "stages_rerun": len(ran),
            "note": "temporary project, 400 real rows, tiny networks; no-op cost is hashing + lock checks"}


# --------------------------------------------------------------------------- orchestration


def _child(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one side in a fresh interpreter (own peak RSS); returns its JSON result."""
    spec_path = work / f"spec_{kind}_{spec.get('spec_tag') or spec.get('arch', 'x')}.json"
    out_path = spec_path.with_name(spec_path.name.replace("spec_", "result_"))
    spec_path.write_text(json.dumps({**spec, "kind": kind, "work": str(work), "out": str(out_path)}))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(spec_path)],
                       env={**os.environ, **CHILD_ENV}, capture_output=True, text=True)
    if r.returncode or not out_path.exists():
        raise BenchError(f"{kind} {spec.get('arch', '')} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    result = json.loads(out_path.read_text())
    result["process_wall_s"] = time.perf_counter() - t
    return result


def child_main(spec_path: str) -> None:
    """Entry point of a child process: read the spec, run one side, write the result JSON."""
    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    kind = spec["kind"]
    if kind == "notebook":
        result = run_notebook(spec["arch"], work, spec["seed"], spec.get("max_train_rows"))
    elif kind in ("newsrnn", "prepare"):
        from newsrnn.config import config_from_dict

        cfg = config_from_dict(spec["params"])
        if kind == "prepare":
            result = prepare_data(cfg, Path(spec["data_dir"]), work, spec.get("max_train_rows"))
        else:
            result = run_newsrnn(cfg, spec["arch"], work, spec.get("target"), spec.get("eval_fraction", 0.1),
                                 spec.get("arch_overrides"),
                                 Path(spec["model_out"]) if spec.get("model_out") else None)
    elif kind == "predict":
        result = run_predict(Path(spec["model_dir"]), work)
    elif kind == "ensemble":
        from newsrnn.config import config_from_dict

        result = run_ensemble(config_from_dict(spec["params"]), work, [Path(d) for d in spec["members"]],
                              Path(spec["model_out"]))
    else:
        raise BenchError(f"unknown child kind {kind!r}")
    Path(spec["out"]).write_text(json.dumps(result, indent=1))
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is on disk; skip interpreter teardown, which with live tf.data iterators can
    # spin for minutes after training has finished.
    os._exit(0)


def combine(arch: str, nb: dict[str, Any] | None, nr: dict[str, Any],
            target_from: str | None) -> dict[str, Any]:
    """One architecture's row of the results file."""
    nb_epoch = nb["epoch_s"] if nb else None
    nb_acc = nb["test_accuracy"] if nb else None
    return {
        "arch": arch, "compared_to": target_from,
        "notebook_epoch_s": nb_epoch, "notebook_samples_per_s": nb["samples_per_s"] if nb else None,
        "notebook_test_accuracy": nb_acc, "notebook_train_rows": nb["train_rows"] if nb else None,
        "notebook_peak_rss_mb": nb["peak_rss_mb"] if nb else None,
        "newsrnn_epoch_s": nr["mean_epoch_s"], "newsrnn_first_epoch_s": nr["first_epoch_s"],
        "newsrnn_samples_per_s": nr["samples_per_s"], "newsrnn_train_rows": nr["train_rows"],
        "newsrnn_epochs": nr["epochs"], "newsrnn_train_s": nr["train_s"],
        "newsrnn_time_to_notebook_accuracy_s": nr["time_to_target_s"],
        "newsrnn_reached_at_epoch": nr["target_reached_at_epoch"],
        "speedup": ratio(nb_epoch, nr["time_to_target_s"]),
        "epoch_time_ratio": ratio(nr["mean_epoch_s"], nb_epoch),
        "newsrnn_val_accuracy": nr["val_accuracy"], "newsrnn_test_accuracy": nr["test_accuracy"],
        "accuracy_gain": (nr["test_accuracy"] - nb_acc) if nb_acc is not None else None,
        "peak_rss_mb": nr["peak_rss_mb"], "newsrnn_peak_rss_mb": nr["peak_rss_mb"],
        "rss_ratio": ratio(nr["peak_rss_mb"], nb["peak_rss_mb"] if nb else None),
        "newsrnn_batch_size": nr["batch_size"], "newsrnn_learning_rate": nr["learning_rate"],
        "newsrnn_test_curve": nr["test_curve"], "newsrnn_val_history": nr["val_history"],
    }


def ensemble_row(members: list[str], rows: list[dict[str, Any]], notebook: dict[str, dict[str, Any]],
                 ens: dict[str, Any]) -> dict[str, Any]:
    """The ensemble's row: compared with the best notebook architecture among its members; its
    training time is the sum of the members'. Speed columns do not apply (it is not trained)."""
    by_arch = {r["arch"]: r for r in rows}
    nb_members = [a for a in members if a in notebook]
    ref = max(nb_members, key=lambda a: notebook[a]["test_accuracy"]) if nb_members else None
    nb = notebook.get(ref) if ref else None
    keys = ("notebook_epoch_s", "notebook_samples_per_s", "notebook_train_rows", "newsrnn_epoch_s",
            "newsrnn_first_epoch_s", "newsrnn_samples_per_s", "newsrnn_epochs",
            "newsrnn_time_to_notebook_accuracy_s", "newsrnn_reached_at_epoch", "speedup", "epoch_time_ratio",
            "rss_ratio", "newsrnn_batch_size", "newsrnn_learning_rate", "notebook_peak_rss_mb")
    return {
        **{k: None for k in keys}, "arch": "ensemble", "members": members, "compared_to": ref,
        "notebook_test_accuracy": nb["test_accuracy"] if nb else None,
        "newsrnn_train_rows": by_arch[members[0]]["newsrnn_train_rows"],
        "newsrnn_train_s": sum(by_arch[a]["newsrnn_train_s"] for a in members),
        "newsrnn_val_accuracy": ens["val_accuracy"], "newsrnn_test_accuracy": ens["test_accuracy"],
        "accuracy_gain": (ens["test_accuracy"] - nb["test_accuracy"]) if nb else None,
        "peak_rss_mb": ens["peak_rss_mb"], "newsrnn_peak_rss_mb": ens["peak_rss_mb"],
        "newsrnn_test_curve": [], "newsrnn_val_history": [],
    }


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table (plus the predict and overhead lines)."""
    lines = ["| arch | notebook epoch s | notebook samples/s | notebook test acc | newsrnn epoch s | "
             "newsrnn samples/s | newsrnn s to notebook acc | speedup | newsrnn test acc | gain (pts) | "
             "peak RSS MB (nb / newsrnn) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["archs"]:
        gain = None if r["accuracy_gain"] is None else 100 * r["accuracy_gain"]
        arch = r["arch"] + (f" of {'+'.join(r['members'])}" if r.get("members") else "")
        arch += f" (vs {r['compared_to']})" if r["compared_to"] else ""
        lines.append(
            f"| {arch} | {_fmt(r['notebook_epoch_s'])} | {_fmt(r['notebook_samples_per_s'], '.0f')} | "
            f"{_fmt(r['notebook_test_accuracy'], '.4f')} | {_fmt(r['newsrnn_epoch_s'])} | "
            f"{_fmt(r['newsrnn_samples_per_s'], '.0f')} | {_fmt(r['newsrnn_time_to_notebook_accuracy_s'])} | "
            f"{'-' if r['speedup'] is None else format(r['speedup'], '.1f') + 'x'} | "
            f"{_fmt(r['newsrnn_test_accuracy'], '.4f')} | "
            f"{_fmt(gain, '+.1f')} | "
            f"{_fmt(r['notebook_peak_rss_mb'], '.0f')} / {_fmt(r['peak_rss_mb'], '.0f')} |")
    p = results.get("predict") or {}
    if "p50_ms" in p:
        lines.append("")
        lines.append(f"predict ({p.get('arch')}, in-process Predictor): p50 {p['p50_ms']:.2f} ms, "
                     f"p99 {p['p99_ms']:.2f} ms, batch {p['batch_texts_per_s']:.0f} texts/s"
                     + (f" (XLA single-text path, warm-up {p['warmup_s']:.1f} s; plain graph path p50 "
                        f"{p['graph_p50_ms']:.2f} ms)" if p.get("xla") else ""))
    h = results.get("help") or {}
    if "median_s" in h:
        lines.append(f"`newsrnn --help`: {h['median_s']:.2f} s (median of {h['runs']})")
    d = results.get("dvc") or {}
    if "noop_s" in d:
        lines.append(f"no-op `dvc repro`: {d['noop_s']:.2f} s ({d['stages_rerun']} stages re-run)")
    elif d.get("error"):
        lines.append(f"no-op `dvc repro`: failed ({d['error'][:200]})")
    return "\n".join(lines)


def corpus_dir(args: Any) -> Path:
    """The ag_news_csv directory a benchmark reads: ``--data-dir``, else NEWSRNN_DATA_DIR, checked."""
    data_dir = getattr(args, "data_dir", None) or os.environ.get("NEWSRNN_DATA_DIR")
    if not data_dir:
        raise BenchError("no data: pass --data-dir DIR or set NEWSRNN_DATA_DIR (an ag_news_csv directory)")
    data_dir = Path(data_dir).resolve()
    for name in ("train.csv", "test.csv"):
        if not (data_dir / name).is_file():
            raise BenchError(f"{data_dir / name}: not found (expected the ag_news_csv layout)")
    return data_dir


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark (see the module docstring); write JSON, print the table, return it."""
    from newsrnn.config import KNOWN_ARCHS, config_to_dict, load_config

    params_path = Path(getattr(args, "params", None) or "params.yaml")
    cfg = load_config(params_path)
    data_dir = corpus_dir(args)
    archs_arg = getattr(args, "archs", None) or ",".join(NOTEBOOK_ARCHS)
    archs = [a.strip() for a in archs_arg.split(",") if a.strip()]
    for a in archs:
        if a not in KNOWN_ARCHS:
            raise BenchError(f"--archs: unknown architecture {a!r}; known: {', '.join(KNOWN_ARCHS)}")
    skip = set(getattr(args, "skip", None) or os.environ.get("NEWSRNN_BENCH_SKIP", "").split(","))
    max_rows = getattr(args, "max_train_rows", None)
    eval_fraction = float(getattr(args, "eval_fraction", None) or 0.1)
    root = Path(__file__).resolve().parents[1]
    out = Path(getattr(args, "out", None) or
               f"benchmarks/results/bench_{time.strftime('%Y%m%d-%H%M%S')}.json")
    params = config_to_dict(cfg)
    work = Path(tempfile.mkdtemp(prefix="newsrnn-bench-"))
    results: dict[str, Any] = {"machine": machine_info(), "params_file": str(params_path),
                               "data_dir": str(data_dir), "max_train_rows": max_rows, "archs": []}
    try:
        print(f"bench: preparing data in {work}", flush=True)
        results["data"] = _child("prepare", {"params": params, "data_dir": str(data_dir),
                                             "max_train_rows": max_rows}, work)
        notebook: dict[str, dict[str, Any]] = {}
        models: dict[str, Path] = {}
        order = sorted(archs, key=lambda a: a in TARGET_OF)  # these need the lstm target first
        for arch in order:
            nb_arch = arch if arch in NOTEBOOK_ARCHS else TARGET_OF.get(arch)
            if nb_arch and nb_arch not in notebook and "notebook" not in skip:
                print(f"bench: notebook recipe {nb_arch}", flush=True)
                notebook[nb_arch] = _child("notebook", {"arch": nb_arch, "seed": cfg.seed,
                                                        "max_train_rows": max_rows}, work)
                done = notebook[nb_arch]
                print(f"  {done['epoch_s']:.1f}s, test acc {done['test_accuracy']:.4f}", flush=True)
            nb = notebook.get(nb_arch) if nb_arch else None
            print(f"bench: newsrnn {arch}", flush=True)
            models[arch] = work / "models" / arch
            nr = _child("newsrnn", {"arch": arch, "params": params, "eval_fraction": eval_fraction,
                                    "target": nb["test_accuracy"] if nb else None,
                                    "model_out": str(models[arch])}, work)
            row = combine(arch, nb, nr, nb_arch if nb_arch != arch else None)
            results["archs"].append(row)
            print(f"  epoch {row['newsrnn_epoch_s']:.1f}s, "
                  f"to target {_fmt(row['newsrnn_time_to_notebook_accuracy_s'])}s, "
                  f"test acc {row['newsrnn_test_accuracy']:.4f}", flush=True)
        members = [a for a in cfg.ensemble if a in models]
        if cfg.ensemble and len(members) == len(cfg.ensemble) and "ensemble" not in skip:
            print(f"bench: ensemble of {', '.join(members)}", flush=True)
            models["ensemble"] = work / "models" / "ensemble"
            ens = _child("ensemble", {"params": params, "members": [str(models[a]) for a in members],
                                      "model_out": str(models["ensemble"])}, work)
            results["archs"].append(ensemble_row(members, results["archs"], notebook, ens))
            print(f"  test acc {ens['test_accuracy']:.4f}", flush=True)
        best = max(results["archs"], key=lambda r: r["newsrnn_val_accuracy"])
        if "predict" not in skip:
            print(f"bench: predict latency ({best['arch']})", flush=True)
            pred = _child("predict", {"arch": best["arch"], "model_dir": str(models[best["arch"]])}, work)
            results["predict"] = {"arch": best["arch"], **pred}
        if "help" not in skip:
            results["help"] = time_help()
        if "dvc" not in skip:
            print("bench: no-op dvc repro", flush=True)
            results["dvc"] = time_dvc_noop(root, data_dir, work)
    finally:
        keep = os.environ.get("NEWSRNN_BENCH_KEEP_MODELS")  # a directory: the trained models are copied there
        if keep and (work / "models").is_dir():
            shutil.copytree(work / "models", keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    if hasattr(os, "getloadavg"):
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["params"] = {"train": params["train"], "vectorizer": params["vectorizer"],
                         "architectures": {a: params["architectures"][a] for a in archs}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)
    table = markdown_table(results)
    print(table)
    print(f"bench: results -> {out}")
    return results


if __name__ == "__main__":
    child_main(sys.argv[1])
