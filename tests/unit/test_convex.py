"""solver: lbfgs: the sparse features are the network's own, and the fitted network is the
one-vs-rest L2 logistic regression on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support import small_params
from synthetic import make_rows

from newsrnn.config import ArchConfig, Settings, TrainConfig, config_from_dict
from newsrnn.errors import ConfigError


def _frame(n: int, seed: int) -> pd.DataFrame:
    rows = make_rows(n, seed)
    return pd.DataFrame({"label": [int(c) - 1 for c, _, _ in rows], "title": [t for _, t, _ in rows],
                         "description": [d for _, _, d in rows]})


def _setup(arch: ArchConfig) -> tuple:
    import keras

    from newsrnn.data import Datasets, idf_of
    from newsrnn.nn.trainable import build_trainable

    train_df, val_df = _frame(320, 0), _frame(120, 1)
    vec = keras.layers.TextVectorization(max_tokens=120, output_mode="int", name="vectorizer")
    vec.adapt((train_df["title"] + " " + train_df["description"]).to_numpy().astype(str))
    vocab = len(vec.get_vocabulary())
    settings = Settings("wide", arch, TrainConfig(epochs=2), 32, 0.01, 42)
    data = Datasets(vec, 32, train_df, val_df, settings)
    idf = idf_of(arch, vocab, data)
    return data, build_trainable(settings, vocab, data.steps_per_epoch(), idf=idf), idf


@pytest.mark.parametrize("weighting", ["nb", "tfidf"])
def test_lbfgs_fits_the_one_vs_rest_regression_on_the_networks_own_features(weighting: str) -> None:
    import keras
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from newsrnn.convex import feature_matrix, network_ngram_rows
    from newsrnn.fit import fit_epochs

    arch = ArchConfig(cell="none", ngram_buckets=101, ngram_dim=4, ngram_weighting=weighting,
                      solver="lbfgs", l2_c=2.0, ngram_max=3)
    data, network, table = _setup(arch)
    ratio = table[:, 1:] if weighting == "nb" else np.ones((len(table), 4), np.float32)
    idf = table[:, 0] if weighting == "nb" else table
    val_rows = [r[r != 0] for ids, _ in data.val() for r in ids.numpy()]
    val_labels = np.concatenate([y.numpy() for _, y in data.val()])
    x_val = feature_matrix(network_ngram_rows(network, val_rows), idf)

    # The sparse features times (ratio * table) are what the network's bag computes.
    bag = keras.Model(network.inputs, network.get_layer("ngram_tfidf").output)
    table_w = network.get_layer("ngram_embedding").get_weights()[0]
    ids = np.zeros((len(val_rows), max(len(r) for r in val_rows) + 3), np.int64)  # extra padding
    for i, r in enumerate(val_rows):
        ids[i, : len(r)] = r
    np.testing.assert_allclose(bag(ids).numpy(), x_val @ (ratio * table_w), rtol=1e-4, atol=1e-6)

    network, history, best = fit_epochs(network, data, epochs=2, patience=1, seed=42)
    assert best == 0 and len(history) == 1 and history[0]["epoch_seconds"] > 0
    # The network now gives the softmax of the four binary regressions' decision values.
    x_train = feature_matrix(network_ngram_rows(network, data.train_rows), idf)
    z = np.stack([LogisticRegression(C=2.0, max_iter=3000)
                  .fit(x_train @ sparse.diags(ratio[:, k].astype(np.float64)), data.train_labels == k)
                  .decision_function(x_val @ sparse.diags(ratio[:, k].astype(np.float64))) for k in range(4)], 1)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = network(ids, training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    accuracy = float(np.mean(got.argmax(1) == val_labels))
    assert history[0]["val_accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.8  # the synthetic topics are learnable

    again, _, _ = fit_epochs(_setup(arch)[1], data, epochs=2, patience=1, seed=42)
    for a, b in zip(again.get_weights(), network.get_weights()):
        np.testing.assert_array_equal(a, b)  # no randomness in the fit


def test_lbfgs_needs_a_linear_model_and_l2_c_is_positive() -> None:
    with pytest.raises(ConfigError, match="architectures.lstm.solver: lbfgs fits a linear model"):
        config_from_dict(small_params(**{"architectures.lstm.solver": "lbfgs"}))
    with pytest.raises(ConfigError, match="architectures.wide.l2_c: expected a number > 0"):
        config_from_dict(small_params(**{"architectures.wide.l2_c": 0}))
    cfg = config_from_dict(small_params(**{"architectures.wide.solver": "lbfgs"}))
    from newsrnn.tune import own_point, space

    assert own_point(cfg, "wide") == {"l2_c": 4.0}
    assert space(cfg, "wide") == {"l2_c": ("log", (0.5, 16.0))}


def test_feature_matrix_rows_are_idf_sums_over_the_root_of_summed_squares() -> None:
    from newsrnn.convex import feature_matrix

    idf = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    m = feature_matrix([np.array([1, 1, 3]), np.array([], np.int64), np.array([2])], idf).toarray()
    norm = np.sqrt(1 + 1 + 9) + 1e-6
    np.testing.assert_allclose(m[0], [0, 2 / norm, 0, 3 / norm])
    assert not m[1].any()  # an empty row has no features (and no division by zero)
    np.testing.assert_allclose(m[2], [0, 0, 2 / (2 + 1e-6), 0])
