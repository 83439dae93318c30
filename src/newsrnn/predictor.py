"""Inference: raw texts -> class probabilities, fast, for the CLI, the MLflow pyfunc and the
server.

The ``Predictor`` wraps a loaded text model (``modelio.load_text_model``) in traced
``tf.function``s: one graph call per single text, and batches cut into length-sorted blocks run
on a thread pool. Measured speeds of these paths are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
from typing import Any

from newsrnn.config import CLASS_NAMES
from newsrnn.modelio import load_text_model

# Padded lengths of the XLA path: few enough to compile all (one compile each, a few seconds),
# close enough to the length distribution of news texts to waste little padding
# (benchmarks/README.md has the measured padding ratios).
XLA_BUCKETS = (16, 24, 32, 40, 48, 56, 64, 80, 96, 128)
# Rows per network call in batch prediction (the XLA path pads blocks to this); chosen by
# measuring 128, 256 and 512 (benchmarks/README.md).
XLA_BATCH = 128
# Id 1 is the vectorizer's out-of-vocabulary token: filler rows hold one unknown word.
OOV_ID = 1


def masks_padding(network: Any) -> bool:
    """Whether right padding leaves ``network``'s output unchanged: its token embedding masks
    padding, or (an ensemble) every sub-network's does."""
    names = {la.name: la for la in network.layers}
    if "embedding" in names:
        return bool(getattr(names["embedding"], "mask_zero", False))
    if "ngram_embedding" in names:  # cell none: only the n-gram bag, which always masks
        return True
    subnets = [la for la in network.layers if hasattr(la, "layers")]
    return bool(subnets) and all(masks_padding(n) for n in subnets)


def _recurrent(network: Any) -> bool:
    """Whether ``network`` (or a sub-network) holds a recurrent layer."""
    import keras

    return any(isinstance(la, (keras.layers.RNN, keras.layers.Bidirectional))
               or (hasattr(la, "layers") and _recurrent(la)) for la in network.layers)


def model_parts(model: Any) -> list[tuple[Any, Any, Any, int]]:
    """(vectorizer, guard, network, members) of each front end of an exported text model.

    A single architecture or a one-front ensemble is one part; an ensemble of word and char
    n-gram members has two, combined by its ``mean_probs`` (PartsMean) layer. A char branch's
    ``JoinedFront`` is one part that reads characters (no XLA path: its rows are long).
    """
    from newsrnn.nn.networks import JoinedFront, guard_layer

    last = model.layers[-1]
    counts = getattr(last, "counts", None)
    if counts is None:
        joined = JoinedFront.from_model(model)
        if joined is not None:  # a char branch: the front guards its parts itself
            return [(joined, guard_layer(None, name="no_guard"), last, 1)]
        return [(model.get_layer("vectorizer"), model.get_layer("guard_ids"), last, 1)]
    parts = []
    for i, c in enumerate(counts):
        s = "" if i == 0 else f"_{i}"
        network = model.get_layer(f"ensemble_network{s}")
        joined = JoinedFront.from_model(model, s)  # its word vectorizer is the shared one
        if joined is not None:
            parts.append((joined, guard_layer(None, name=f"no_guard{s}"), network, int(c)))
        else:
            parts.append((model.get_layer(f"vectorizer{s}"), model.get_layer(f"guard_ids{s}"), network, int(c)))
    return parts


class _Part:
    """One front end and the network behind it, with compiled (traced once) serving functions."""

    def __init__(self, vectorizer: Any, guard: Any, network: Any, members: int, xla: bool) -> None:
        import tensorflow as tf

        from newsrnn.nn.networks import is_char_front

        self.members = members

        def text_probs(x: Any) -> Any:
            return network(guard(vectorizer(x)), training=False)

        # Texts are vectorized together, then run through the network in groups of equal token
        # count: no padding at all, so unmasked RNNs see exactly what a single text would give.
        self.ids = tf.function(lambda x: guard(vectorizer(x)), input_signature=[tf.TensorSpec([None], tf.string)])
        self.net = tf.function(lambda ids: network(ids, training=False),
                               input_signature=[tf.TensorSpec([None, None], tf.int64)], reduce_retracing=True)
        # One text never needs padding: a single graph call from string to probabilities.
        self.one = tf.function(text_probs, input_signature=[tf.TensorSpec([1], tf.string)])
        # A char n-gram front gives ~4 ids per character: vectorizing a whole batch at once would
        # pad every row to the longest text's thousands of ids. Such parts run string blocks of
        # similar character length instead, front end included, on the worker threads.
        self.by_chars = is_char_front(vectorizer)
        if self.by_chars:
            self.full = tf.function(text_probs, input_signature=[tf.TensorSpec([None], tf.string)])
        # With a mask, right padding does not change a prediction, so length-sorted texts can
        # share large batches; without one, only texts of equal token count may share a batch.
        self.masked = masks_padding(network)
        self.max_length = guard.max_length
        # XLA pays off for recurrent networks (many small per-step ops); a bag of n-grams is one
        # gather and a sum, and a char front's long rows would need many compiled lengths.
        self.xla = xla and self.masked and _recurrent(network) and not self.by_chars
        if self.xla:
            self.net_xla = tf.function(lambda ids: network(ids, training=False), jit_compile=True)

    def xla_length(self, n: int) -> int:
        """The padded length a text of ``n`` tokens runs at on the XLA path."""
        for bucket in XLA_BUCKETS:
            if n <= bucket:
                return bucket if self.max_length is None else min(bucket, max(self.max_length, 1))
        return -(-n // XLA_BUCKETS[-1]) * XLA_BUCKETS[-1]

    def xla_block(self, ids: Any, longest: int) -> Any:
        """Rows through the XLA network as one (XLA_BATCH, padded length) block: fixed shapes,
        so each length compiles once; filler rows hold one unknown word and are dropped."""
        import numpy as np
        import tensorflow as tf

        length = self.xla_length(longest)
        block = np.zeros((XLA_BATCH, length), dtype=np.int64)
        block[:, 0] = OOV_ID
        width = min(length, ids.shape[1])
        block[: len(ids), :width] = ids[:, :width]
        return self.net_xla(tf.constant(block)).numpy()[: len(ids)]

    def single(self, clipped: list[str]) -> Any:
        """Probabilities of one (cleaned) text."""
        import numpy as np
        import tensorflow as tf

        if not self.xla:
            return self.one(tf.constant(clipped)).numpy()
        ids = self.ids(tf.constant(clipped)).numpy()
        padded = np.zeros((1, self.xla_length(ids.shape[1])), dtype=np.int64)
        padded[:, : ids.shape[1]] = ids
        return self.net_xla(tf.constant(padded)).numpy()

    def tasks(self, clipped: list[str]) -> list[tuple[Any, Any]]:
        """Vectorize a batch and cut it into blocks: (row indices, callable giving their probabilities)."""
        import numpy as np
        import tensorflow as tf

        if self.by_chars and self.masked:
            order = np.argsort([len(t) for t in clipped], kind="stable")
            blocks = [order[start:start + XLA_BATCH] for start in range(0, len(order), XLA_BATCH)]

            def run_texts(chunk: Any) -> Any:
                return self.full(tf.constant([clipped[i] for i in chunk])).numpy()

            return [(chunk, run_texts) for chunk in blocks]
        ids = self.ids(tf.constant(clipped)).numpy()
        lengths = np.maximum((ids != 0).sum(axis=1), 1)
        if self.masked:
            groups = [np.argsort(lengths, kind="stable")]
        else:
            groups = [np.flatnonzero(lengths == n) for n in np.unique(lengths)]
        chunks = [rows[start:start + XLA_BATCH] for rows in groups for start in range(0, len(rows), XLA_BATCH)]

        def run(chunk: Any) -> Any:
            longest = int(lengths[chunk].max())
            if self.xla and len(chunk) > XLA_BATCH // 16:
                return self.xla_block(ids[chunk], longest)
            return self.net(tf.constant(ids[chunk, :longest])).numpy()

        return [(chunk, run) for chunk in chunks]


class Predictor:
    """Raw text -> probabilities through compiled (traced once) serving functions.

    Calling the Keras model eagerly or via ``model.predict`` costs milliseconds of Python
    overhead per call; a ``tf.function`` with a fixed string signature avoids it. An ensemble
    whose members read different front ends (words, char n-grams) runs each part on its own
    and averages them as its ``mean_probs`` layer does.
    """

    def __init__(self, model: Any, max_batch: int = 10000, max_chars: int = 100_000, xla: bool = False,
                 threads: int | None = None) -> None:
        """``xla=True`` (long-lived predictors: servers, benchmarks) runs single texts through an
        XLA-compiled network, padded to a few fixed lengths, and batches in blocks of
        ``XLA_BATCH`` rows. It is several times faster per single text on CPU (and ~1.7x in
        batch), but each shape compiles once (seconds; ``warmup()`` does all up front). Only
        masked recurrent networks use it: padding must not change their prediction.

        ``threads`` (default: one per CPU core, at most 4): a batch of several blocks runs them
        on that many threads at once. A recurrent network steps through time in small matrix
        products that leave cores idle; TensorFlow releases the GIL while it computes, so two
        blocks in flight keep both cores busy (the measured gain is in benchmarks/README.md).
        """
        self.model = model
        self.max_batch = max_batch
        self.max_chars = max_chars
        self.parts = [_Part(vec, guard, net, members, xla) for vec, guard, net, members in model_parts(model)]
        self.masked = all(p.masked for p in self.parts)
        self.xla = any(p.xla for p in self.parts)
        self.threads = max(1, threads if threads is not None else min(4, os.cpu_count() or 1))
        self._pool: Any = None

    def xla_length(self, n: int) -> int:
        """The padded length a text of ``n`` tokens runs at on the first part's XLA path."""
        return self.parts[0].xla_length(n)

    def warmup(self) -> float:
        """Compile the XLA path for every padded length up front; returns the seconds it took."""
        import time

        import numpy as np
        import tensorflow as tf

        t0 = time.perf_counter()
        # One trace per shape is the point here; TensorFlow's "retracing" warning is not news.
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")
        try:
            for part in self.parts:
                if not part.xla:
                    continue
                top = part.max_length or XLA_BUCKETS[-1]
                for length in sorted({part.xla_length(n) for n in range(1, top + 1)}):
                    for rows in (1, XLA_BATCH):
                        part.net_xla(tf.constant(np.full((rows, length), OOV_ID, dtype=np.int64)))
        finally:
            logger.setLevel(level)
        self.predict_proba(["warm up"])
        self.predict_proba(["warm up", "two texts"])
        return time.perf_counter() - t0

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], **kwargs: Any) -> Predictor:
        """Load a verified model file and wrap it."""
        return cls(load_text_model(path), **kwargs)

    def predict_proba(self, texts: list[str]) -> Any:
        """(n, 4) numpy probabilities. Texts longer than ``max_chars`` are cut (the model only
        reads the first ``max_length`` tokens anyway)."""
        import numpy as np

        if len(texts) > self.max_batch:
            raise ValueError(f"{len(texts)} texts in one request; the limit is {self.max_batch}, "
                             "send smaller batches")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, expected a string")
        if not texts:
            return np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
        from newsrnn.corpus import clean_text

        # Same cleaning as prepare applied to the training text.
        clipped = [clean_text(t[: self.max_chars]) for t in texts]
        total = float(sum(p.members for p in self.parts))
        if len(clipped) == 1:
            outs = [p.single(clipped) for p in self.parts]
            return outs[0] if len(outs) == 1 else sum(o * (p.members / total) for o, p in zip(outs, self.parts))
        jobs = []  # (part index, row chunk, callable)
        for k, part in enumerate(self.parts):
            jobs.extend((k, chunk, run) for chunk, run in part.tasks(clipped))
        if len(jobs) > 1 and self.threads > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="newsrnn-predict")
            outputs = list(self._pool.map(lambda job: job[2](job[1]), jobs))
        else:
            outputs = [run(chunk) for _, chunk, run in jobs]
        probs = np.zeros((len(self.parts), len(clipped), len(CLASS_NAMES)), dtype=np.float32)
        for (k, chunk, _), out in zip(jobs, outputs):
            probs[k, chunk] = out
        if len(self.parts) == 1:
            return probs[0]
        weights = np.array([p.members / total for p in self.parts], dtype=np.float32)
        return np.tensordot(weights, probs, axes=1)

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One ``{"label", "probabilities"}`` dict per text."""
        probs = self.predict_proba(texts)
        return [
            {"label": CLASS_NAMES[int(row.argmax())],
             "probabilities": {c: float(p) for c, p in zip(CLASS_NAMES, row)}}
            for row in probs
        ]
