"""From prepared rows to batches: the text an architecture reads, its ids, length buckets.

The trained network takes right-padded token ids; ``Datasets`` vectorizes each split once,
then cuts seeded, length-grouped batches per epoch. The n-gram idf tables that TF-IDF branches
weigh with are computed here too, from the same training rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from newsrnn.config import ArchConfig, Settings


def load_splits(prepared_dir: str | Path) -> tuple[Any, Any, Any]:
    """The prepared train, val and test DataFrames."""
    from newsrnn.fileio import read_parquet

    d = Path(prepared_dir)
    train, val, test = (read_parquet(d / f"{name}.parquet", "prepare") for name in ("train", "val", "test"))
    return train, val, test


def prepared_data_sha(prepared_dir: str | Path) -> str:
    """The sha256 naming the fetched data version, as recorded by prepare."""
    summary = Path(prepared_dir) / "summary.json"
    if not summary.exists():
        return "unknown"
    return json.loads(summary.read_text()).get("data_sha256", "unknown")


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


def encode_texts(vectorizer: Any, max_length: int | None, texts: Any, chunk: int = 8192) -> list[Any]:
    """Unpadded id rows of ``texts`` (never empty), vectorized ``chunk`` texts at a time: a char
    n-gram front pads every row of a chunk to its longest, so it wants small chunks."""
    import numpy as np
    import tensorflow as tf

    from newsrnn.nn.layers import guard_ids

    rows = []
    for start in range(0, len(texts), chunk):
        ids = guard_ids(vectorizer(tf.constant(texts[start:start + chunk])), max_length).numpy()
        # Cut each row after its last id: the padding (a JoinedFront row has zeros inside too).
        nonzero = ids != 0
        ends = ids.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
        ends[~nonzero.any(axis=1)] = 1
        rows.extend(r[:end] for r, end in zip(ids, ends))
    return rows


def pad_rows(rows: list[Any], lengths: Any, idx: Any) -> Any:
    """Rows ``idx`` right-padded with 0 to the longest of them: one batch."""
    import numpy as np

    x = np.zeros((len(idx), int(lengths[idx].max())), dtype=np.int64)
    for j, i in enumerate(idx):
        x[j, : lengths[i]] = rows[i]
    return x


class Datasets:
    """Batches for one architecture: vectorized once, shuffled per epoch, grouped by length.

    Texts are vectorized up front in large chunks and kept as one flat id array with row
    offsets. Each epoch, a seeded permutation of row indices is cut into batches of texts of
    similar length (``train.batching: bucket``) or in plain order (``padded``); a batch is
    padded only to its own longest text. Doing this in NumPy costs milliseconds per epoch,
    where per-element tf.data maps cost seconds on two cores.
    """

    def __init__(self, vectorizer: Any, max_length: int | None, train_df: Any, val_df: Any,
                 settings: Settings) -> None:
        import numpy as np
        import tensorflow as tf

        arch = settings.arch
        self.arch = arch
        self.tf = tf
        self.train_cfg = settings.train
        self.seed = settings.seed
        # A tuning worker keeps one Datasets for all its trials and sets each trial's batch size.
        self.batch_size = settings.batch_size
        self.max_length = max_length
        self.bounds = np.array(bucket_boundaries(max_length))

        # A char n-gram front gives ~900 ids per text, padded to the longest text of a chunk:
        # smaller chunks keep that padding (and peak memory) small.
        chunk = 1024 if arch.tokens == "char_ngrams" or arch.char_ngram_dim > 0 else 8192
        # JoinedFront rows (a char branch): words in the first word_length columns, then chars.
        self.word_length = getattr(vectorizer, "word_length", None)

        def encode(df: Any) -> tuple[Any, Any, Any, Any]:
            rows = encode_texts(vectorizer, max_length, texts_of(df, arch), chunk)
            lengths = np.array([len(r) for r in rows], dtype=np.int64)
            # Batches group texts by word count: what a recurrent layer steps through.
            words = (lengths if self.word_length is None else
                     np.array([int((r[: self.word_length] != 0).sum()) for r in rows], dtype=np.int64))
            return rows, lengths, df["label"].to_numpy().astype(np.int64), words

        self._train = encode(train_df)
        self._val = encode(val_df)

    @property
    def train_rows(self) -> list[Any]:
        """The training split's unpadded token-id rows (for a char branch: its word ids)."""
        if self.word_length is None:
            return self._train[0]
        return [r[:n] for r, n in zip(self._train[0], self._train[3])]

    @property
    def train_labels(self) -> Any:
        """The training split's class ids, in the order of ``train_rows``."""
        return self._train[2]

    @property
    def train_char_rows(self) -> list[Any]:
        """The training split's char n-gram id rows (a char branch's; else empty)."""
        if self.word_length is None:
            return []
        return [r[self.word_length:] for r in self._train[0]]

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
        n = len(self.batch_indices(self._train[3], self.batch_size, self.seed))
        return min(n, self.train_cfg.max_steps_per_epoch or n)

    def _dataset(self, data: tuple[Any, Any, Any, Any], batches: list[Any]) -> Any:
        tf = self.tf
        rows, lengths, labels, _ = data

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
        batches = self.batch_indices(self._train[3], self.batch_size, seed)
        if self.train_cfg.max_steps_per_epoch:
            batches = batches[: self.train_cfg.max_steps_per_epoch]
        return self._dataset(self._train, batches)

    def val(self) -> Any:
        """Validation batches, grouped by length like training batches.

        Without masking, an RNN reads padding as input; padding a short text to the longest in a
        large batch would score it on something training never showed it.
        """
        return self._dataset(self._val, self.batch_indices(self._val[3], max(256, self.batch_size), None))


def build_front(arch: ArchConfig, vectorizer: Any, vec_config: dict[str, Any]) -> tuple[Any, int | None, int]:
    """What turns an architecture's raw text into ids: (layer, guard max_length, vocab size).

    The shared word vectorizer (``build_vectorizer``'s layer and config), or for ``tokens:
    char_ngrams`` the char n-gram hasher (no vocabulary; its ids run to ``ngram_buckets``).
    """
    if arch.tokens == "char_ngrams":
        from newsrnn.nn.networks import char_front, char_front_max_length

        return char_front(arch), char_front_max_length(arch), arch.ngram_buckets + 1
    if arch.tokens == "word_ngrams":
        from newsrnn.nn.networks import word_ngram_front, word_ngram_front_max_length

        return word_ngram_front(arch), word_ngram_front_max_length(arch), arch.ngram_buckets + 1
    if arch.char_ngram_dim > 0:
        from newsrnn.nn.networks import JoinedFront

        # The JoinedFront guards both parts itself (config requires vectorizer.max_length).
        return JoinedFront.build(arch, vectorizer, vec_config["max_length"]), None, vec_config["vocab_size"]
    return vectorizer, vec_config["max_length"], vec_config["vocab_size"]


def id_idf(rows: Any, size: int) -> Any:
    """Smoothed idf, ``ln((1 + n) / (1 + df)) + 1``, of every id in ``range(size)`` over ``rows``
    (unpadded id arrays: a char front's ids, or ``ngram_idf``'s words and bigrams); id 0 gets 0."""
    import numpy as np

    df = np.zeros(size, dtype=np.int64)
    for start in range(0, len(rows), 4096):
        chunk = [np.unique(r) for r in rows[start:start + 4096]]
        df += np.bincount(np.concatenate(chunk), minlength=size)
    idf = (np.log((1.0 + len(rows)) / (1.0 + df)) + 1.0).astype(np.float32)
    idf[0] = 0.0
    return idf


def ngram_ids_np(row: Any, vocab_size: int, buckets: int, longest: int = 2) -> Any:
    """NumPy twin of ``NgramIds`` for one unpadded row of token ids: its words and hashed
    bigrams (and trigrams, ``longest`` 3)."""
    import numpy as np

    row = np.asarray(row, dtype=np.int64)
    parts = [row, vocab_size + (row[:-1] * 1000003 + row[1:]) % buckets]
    if longest >= 3:
        parts.append(vocab_size + ((row[:-2] * 1000003 + row[1:-1]) * 1000003 + row[2:]) % buckets)
    return np.concatenate(parts)


def ngram_rows(rows: Any, vocab_size: int, buckets: int, longest: int = 2) -> list[Any]:
    """``ngram_ids_np`` of each row: the ids an ``NgramIds`` branch reads for those texts."""
    return [ngram_ids_np(r, vocab_size, buckets, longest) for r in rows]


def ngram_idf(rows: Any, vocab_size: int, buckets: int, longest: int = 2) -> Any:
    """``id_idf`` of every word and hashed n-gram id over ``rows`` (unpadded token-id arrays of
    the training split): the table ``IdfBag`` weighs with."""
    return id_idf(ngram_rows(rows, vocab_size, buckets, longest), vocab_size + buckets)


def nb_ratios(rows: Any, labels: Any, size: int, n_classes: int = 4, alpha: float = 1.0) -> Any:
    """Each id's Naive-Bayes log-count ratio for each class, (size, n_classes) float32:
    ``log((p / |p|) / (q / |q|))`` with ``p`` the number of ``rows`` of the class holding the id
    and ``q`` of the other rows, both plus ``alpha``. Positive: the id speaks for the class."""
    import numpy as np

    labels = np.asarray(labels)
    df = np.zeros((n_classes, size), dtype=np.float64)
    for k in range(n_classes):
        held = [np.unique(r) for r, y in zip(rows, labels) if y == k]
        if held:
            df[k] = np.bincount(np.concatenate(held), minlength=size)
    out = np.zeros((size, n_classes), dtype=np.float32)
    for k in range(n_classes):
        p = alpha + df[k]
        q = alpha + df.sum(0) - df[k]
        out[:, k] = np.log((p / p.sum()) / (q / q.sum()))
    out[0] = 0.0
    return out


def idf_of(arch: ArchConfig, vocab_size: int, data: Datasets) -> Any:
    """The n-gram weights ``arch`` needs, from the training rows: for ngram_weighting tfidf the
    idf table (size,), for nb (size, 1 + 4): the idf, then each class's ``nb_ratios``; else None."""
    import numpy as np

    if arch.ngram_buckets == 0 or arch.ngram_weighting == "mean":
        return None
    if arch.tokens != "words":  # the front hashed the n-grams already
        rows, size = data.train_rows, arch.ngram_buckets + 1
    else:
        rows = ngram_rows(data.train_rows, vocab_size, arch.ngram_buckets, arch.ngram_max)
        size = vocab_size + arch.ngram_buckets
    idf = id_idf(rows, size)
    if arch.ngram_weighting == "tfidf":
        return idf
    return np.concatenate([idf[:, None], nb_ratios(rows, data.train_labels, size)], axis=1)


def char_idf_of(arch: ArchConfig, data: Datasets) -> Any:
    """The idf table of a char branch (``char_ngram_dim`` > 0), from the training rows; else None."""
    if arch.char_ngram_dim == 0:
        return None
    return id_idf(data.train_char_rows, arch.char_ngram_buckets + 1)
