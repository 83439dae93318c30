"""Word vectors pre-trained on the corpus: what they capture, how they are saved and used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import small_params

from newsrnn.config import ArchConfig, VectorizerConfig, config_from_dict
from newsrnn.embeddings import cooccurrence, word_vectors
from newsrnn.errors import ArtifactError, ConfigError


def _topic_rows(n: int = 400, seed: int = 0) -> list[np.ndarray]:
    """Texts drawn from two topics: ids 2-11 only co-occur with each other, as do 12-21."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lo = 2 if i % 2 == 0 else 12
        rows.append(rng.integers(lo, lo + 10, size=rng.integers(4, 12)))
    return rows


def test_cooccurrence_counts_window_pairs_and_skips_padding_and_unknown() -> None:
    m = cooccurrence([np.array([2, 3, 1, 4]), np.array([5, 2])], vocab_size=6, window=2).toarray()
    assert m[2, 3] == m[3, 2] == 1.0          # neighbours
    assert m[3, 4] == 0.5                     # two apart (the unknown word between still counts as distance)
    assert m[2, 4] == 0.0                     # three apart: outside the window
    assert m[1].sum() == 0 and m[:, 1].sum() == 0
    assert m[5, 2] == 1.0 and m[4, 5] == 0.0  # no pair across two texts


def test_word_vectors_put_words_of_one_topic_together() -> None:
    vecs = word_vectors(_topic_rows(), vocab_size=22, dim=4, window=3)
    assert vecs.shape == (22, 4) and vecs.dtype == np.float32
    assert (vecs[:2] == 0).all()
    assert vecs[2:].std() == pytest.approx(0.05, rel=1e-3)
    unit = vecs[2:] / np.linalg.norm(vecs[2:], axis=1, keepdims=True)
    sims = unit @ unit.T
    same = np.r_[sims[:10, :10][~np.eye(10, dtype=bool)], sims[10:, 10:][~np.eye(10, dtype=bool)]]
    across = sims[:10, 10:].ravel()
    assert same.mean() > 0.5 and across.mean() < same.mean() - 0.5
    np.testing.assert_array_equal(vecs, word_vectors(_topic_rows(), vocab_size=22, dim=4, window=3))
    with pytest.raises(ValueError, match="smaller than the vocabulary"):
        word_vectors(_topic_rows(), vocab_size=22, dim=20)


def _vectorized(tmp_path: Path, pretrain_dim: int) -> Path:
    from newsrnn.vectorize import vectorize

    prep = tmp_path / "prepared"
    prep.mkdir(exist_ok=True)
    words = [f"w{i}" for i in range(40)]
    rng = np.random.default_rng(1)
    titles = [" ".join(rng.choice(words[:20] if i % 2 else words[20:], size=6)) for i in range(200)]
    pd.DataFrame({"label": [i % 4 for i in range(200)], "title": titles, "description": titles,
                  "line": range(200)}).to_parquet(prep / "train.parquet")
    out = tmp_path / f"vec{pretrain_dim}"
    vectorize(VectorizerConfig(max_tokens=100, max_length=16, pretrain_dim=pretrain_dim), prep, out)
    return out


def test_vectorize_saves_verified_vectors_and_networks_start_from_them(tmp_path: Path) -> None:
    from newsrnn.nn.networks import build_network
    from newsrnn.vectorize import initial_embeddings, load_embeddings, load_vectorizer_spec

    vec_dir = _vectorized(tmp_path, pretrain_dim=8)
    _, config = load_vectorizer_spec(vec_dir)
    vecs = load_embeddings(vec_dir)
    assert vecs.shape == (config["vocab_size"], 8)

    arch = ArchConfig(cell="gru", embed_dim=6, units=3, pretrained_embeddings=True)
    net = build_network(arch, config["vocab_size"], embeddings=initial_embeddings(arch, vec_dir))
    np.testing.assert_array_equal(net.get_layer("embedding").get_weights()[0], vecs[:, :6])
    assert initial_embeddings(ArchConfig(), vec_dir) is None  # not asked for: random start
    with pytest.raises(ValueError, match="no pre-trained vectors"):
        build_network(arch, config["vocab_size"])
    with pytest.raises(ValueError, match="do not fit"):
        build_network(ArchConfig(embed_dim=12, pretrained_embeddings=True), config["vocab_size"], embeddings=vecs)

    raw = (vec_dir / "embeddings.npy").read_bytes()
    (vec_dir / "embeddings.npy").write_bytes(raw[:-16])
    with pytest.raises(ArtifactError, match="does not match config.json"):
        load_embeddings(vec_dir)


def test_vectors_not_pretrained_give_an_actionable_error(tmp_path: Path) -> None:
    from newsrnn.vectorize import initial_embeddings

    vec_dir = _vectorized(tmp_path, pretrain_dim=0)
    assert not (vec_dir / "embeddings.npy").exists()
    with pytest.raises(ArtifactError, match="set vectorizer.pretrain_dim"):
        initial_embeddings(ArchConfig(pretrained_embeddings=True), vec_dir)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"vectorizer.pretrain_dim": 0},
         "architectures.rnn_title.embed_dim: 8 is larger than vectorizer.pretrain_dim (0)"),
        ({"vectorizer.pretrain_dim": 498}, "vectorizer.pretrain_dim: 498 must be below"),
        ({"vectorizer.pretrain_dim": 8, "tune.n_trials": 2},
         "tune.embed_dim: 16 is larger than vectorizer.pretrain_dim (8)"),
    ],
)
def test_pretrained_settings_checked_at_load(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        config_from_dict(small_params(**override))
    assert message in str(err.value)
