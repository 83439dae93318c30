"""Stage ``vectorize``: adapt a TextVectorization vocabulary and save it as text + config.

The saved form is plain (``vocab.txt``, one token per line, and ``config.json`` with the settings
and the vocabulary's sha256), so it can be inspected, diffed and verified before use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsrnn.config import VectorizerConfig
from newsrnn.errors import ArtifactError
from newsrnn.fileio import atomic_dir, read_parquet, sha256_file


@dataclass
class VectorizeResult:
    """Vocabulary size and where it was written."""

    vocab_size: int
    out_dir: str


def training_text(df: Any, fields: tuple[str, ...]) -> Any:
    """Join the chosen text fields of each row with a space."""
    if fields == ("title",):
        return df["title"]
    if fields == ("description",):
        return df["description"]
    return df["title"] + " " + df["description"]


def vectorize(cfg: VectorizerConfig, prepared_dir: str | Path = "data/prepared",
              out_dir: str | Path = "artifacts/vectorizer") -> VectorizeResult:
    """Adapt the vocabulary on training text (all rows, or the first ``adapt_rows``)."""
    import numpy as np

    from newsrnn.runtime import quiet_tensorflow

    quiet_tensorflow()
    import keras

    train = read_parquet(Path(prepared_dir) / "train.parquet", "prepare")
    text = training_text(train, cfg.adapt_fields)
    if cfg.adapt_rows is not None:
        text = text.head(cfg.adapt_rows)
    from newsrnn.nn.networks import standardizer

    layer = keras.layers.TextVectorization(max_tokens=cfg.max_tokens, output_mode="int",
                                           standardize=standardizer(cfg.standardize))
    layer.adapt(text.to_numpy(dtype=object).astype(str), batch_size=1024)
    vocab = layer.get_vocabulary()
    with atomic_dir(out_dir) as tmp:
        # Index 0 (padding "") and 1 ("[UNK]") are implicit; the file holds the learned tokens.
        (tmp / "vocab.txt").write_text("\n".join(vocab[2:]) + "\n", encoding="utf-8")
        config = {
            "max_tokens": cfg.max_tokens,
            "max_length": cfg.max_length,
            "vocab_size": len(vocab),
            "adapt_fields": list(cfg.adapt_fields),
            "adapt_rows": cfg.adapt_rows,
            "standardize": cfg.standardize,
            "vocab_sha256": sha256_file(tmp / "vocab.txt"),
            "pretrain_dim": cfg.pretrain_dim,
        }
        if cfg.pretrain_dim:
            vectors = pretrain(layer, training_text(train, cfg.adapt_fields), cfg)
            np.save(tmp / "embeddings.npy", vectors, allow_pickle=False)
            config["pretrain_window"] = cfg.pretrain_window
            config["embeddings_sha256"] = sha256_file(tmp / "embeddings.npy")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"vectorize: vocabulary of {len(vocab)} tokens -> {out_dir}")
    return VectorizeResult(len(vocab), str(out_dir))


def pretrain(layer: Any, text: Any, cfg: VectorizerConfig) -> Any:
    """Word vectors (vocab, pretrain_dim) from every training text (see embeddings.py)."""
    import time

    import tensorflow as tf

    from newsrnn.embeddings import word_vectors

    t0 = time.perf_counter()
    texts = text.to_numpy(dtype=object).astype(str)
    rows = []
    for start in range(0, len(texts), 8192):
        ids = layer(tf.constant(texts[start:start + 8192])).numpy()
        rows.extend(r[r != 0] for r in ids)
    vectors = word_vectors(rows, len(layer.get_vocabulary()), cfg.pretrain_dim, cfg.pretrain_window)
    print(f"vectorize: pre-trained {vectors.shape[1]}-d word vectors on {len(rows)} texts "
          f"in {time.perf_counter() - t0:.1f}s")
    return vectors


def load_embeddings(vec_dir: str | Path = "artifacts/vectorizer") -> Any:
    """The pre-trained word vectors, verified against config.json."""
    import numpy as np

    _, config = load_vectorizer_spec(vec_dir)
    path = Path(vec_dir) / "embeddings.npy"
    if not config.get("pretrain_dim"):
        raise ArtifactError(f"{vec_dir}: has no pre-trained word vectors; set vectorizer.pretrain_dim "
                            "and re-run `newsrnn vectorize` (or turn pretrained_embeddings off)")
    if not path.exists():
        raise ArtifactError(f"{path}: not found; re-run `newsrnn vectorize`")
    got = sha256_file(path)
    if got != config.get("embeddings_sha256"):
        raise ArtifactError(f"{path}: sha256 {got} does not match config.json; the file is truncated or "
                            "altered, re-run `newsrnn vectorize`")
    vectors = np.load(path, allow_pickle=False)
    if vectors.shape != (config["vocab_size"], config["pretrain_dim"]):
        raise ArtifactError(f"{path}: shape {vectors.shape}, expected "
                            f"({config['vocab_size']}, {config['pretrain_dim']}); re-run `newsrnn vectorize`")
    return vectors


def initial_embeddings(arch: Any, vec_dir: str | Path = "artifacts/vectorizer") -> Any:
    """The vectors an architecture starts from: pre-trained ones if it asks, else None."""
    return load_embeddings(vec_dir) if arch.pretrained_embeddings else None


def load_vectorizer_spec(vec_dir: str | Path = "artifacts/vectorizer") -> tuple[list[str], dict[str, Any]]:
    """Read and verify a saved vocabulary; returns (tokens without pad/UNK, config)."""
    vec_dir = Path(vec_dir)
    cfg_path, vocab_path = vec_dir / "config.json", vec_dir / "vocab.txt"
    for p in (cfg_path, vocab_path):
        if not p.exists():
            raise ArtifactError(f"{p}: not found; run `newsrnn vectorize` first")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{cfg_path}: not valid JSON ({exc}); re-run `newsrnn vectorize`") from None
    got = sha256_file(vocab_path)
    if got != config.get("vocab_sha256"):
        raise ArtifactError(
            f"{vocab_path}: sha256 {got} does not match the {config.get('vocab_sha256')} recorded in "
            f"{cfg_path}; the vocabulary is truncated or altered, re-run `newsrnn vectorize`"
        )
    tokens = vocab_path.read_text(encoding="utf-8").split("\n")[:-1]
    return tokens, config


def build_vectorizer(vec_dir: str | Path = "artifacts/vectorizer") -> Any:
    """A TextVectorization layer with the saved vocabulary (no re-adapting)."""
    import keras

    from newsrnn.nn.networks import standardizer

    tokens, config = load_vectorizer_spec(vec_dir)
    try:
        standardize = standardizer(config.get("standardize", "lower_and_strip_punctuation"))
    except ValueError as exc:
        raise ArtifactError(f"{Path(vec_dir) / 'config.json'}: {exc}; re-run `newsrnn vectorize`") from None
    return keras.layers.TextVectorization(
        max_tokens=config["max_tokens"], output_mode="int", vocabulary=tokens, standardize=standardize,
        name="vectorizer"
    ), config
