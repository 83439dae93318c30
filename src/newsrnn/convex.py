"""``solver: lbfgs``: fit a linear architecture (``cell: none``) exactly, as a convex problem.

A ``cell: none`` network with ``ngram_dim: 4`` is a linear model over the TF-IDF features its
``IdfBag`` computes (for ``ngram_weighting: nb`` each class's features also scaled by their
Naive-Bayes log-count ratios). Adam for two epochs leaves it short of the optimum and without
regularisation; here the same features are built as a sparse matrix from the training rows and
each class gets an L2-regularised one-vs-rest logistic regression (scikit-learn, L-BFGS, inverse
strength ``l2_c``), as NB-SVM does (Wang & Manning 2012). The coefficients become the n-gram
embedding, the output layer the identity plus the intercepts, so the exported model computes the
softmax of the four decision values from raw text, with no scikit-learn at inference.

Deterministic (no sampling, no shuffling); the history it returns has one row, like one epoch.
"""

from __future__ import annotations

import time
from typing import Any

N_CLASSES = 4


def feature_matrix(rows: list[Any], idf: Any) -> Any:
    """The ``IdfBag`` features of ``rows`` (unpadded n-gram id arrays) as a CSR matrix: each
    occurrence adds its id's idf, and a row is divided by the root of its summed squared
    occurrence weights (plus the layer's 1e-6)."""
    import numpy as np
    from scipy import sparse

    size = len(idf)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.concatenate(rows).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    w = idf[ids].astype(np.float64)
    owner = np.repeat(np.arange(len(rows)), lengths)
    norm = np.sqrt(np.bincount(owner, weights=w * w, minlength=len(rows))) + 1e-6
    m = sparse.csr_matrix((w, ids, indptr), shape=(len(rows), size))
    m.sum_duplicates()
    return sparse.diags(1.0 / norm) @ m


def network_ngram_rows(network: Any, rows: list[Any]) -> list[Any]:
    """The n-gram ids the network's bag reads for each unpadded id row: the words and their
    hashed n-grams (an ``NgramIds`` layer), or the char n-gram ids themselves."""
    from newsrnn.data import ngram_rows

    if "ngram_ids" not in {la.name for la in network.layers}:
        return rows
    layer = network.get_layer("ngram_ids")
    return ngram_rows(rows, layer.vocab_size, layer.buckets, layer.longest)


def fit_convex(network: Any, data: Any, l2_c: float) -> tuple[Any, list[dict[str, float]], int]:
    """Set ``network``'s weights to the one-vs-rest L2 logistic regression on its own features of
    ``data``'s training rows; returns (network, [one history row], 0) like ``fit_epochs``."""
    import numpy as np
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    bag = network.get_layer("ngram_tfidf")
    weights = bag.get_weights()
    idf = weights[0]
    ratio = weights[1] if len(weights) > 1 else np.ones((len(idf), N_CLASSES), np.float32)
    x = feature_matrix(network_ngram_rows(network, data.train_rows), idf)
    y = np.asarray(data.train_labels)
    coef = np.zeros((len(idf), N_CLASSES), np.float32)
    intercept = np.zeros(N_CLASSES, np.float32)
    for k in range(N_CLASSES):
        scale = sparse.diags(ratio[:, k].astype(np.float64))
        model = LogisticRegression(C=l2_c, max_iter=3000).fit(x @ scale, (y == k).astype(np.int64))
        coef[:, k] = model.coef_[0]
        intercept[k] = model.intercept_[0]
    network.get_layer("ngram_embedding").set_weights([coef])
    network.get_layer("probs").set_weights([np.eye(N_CLASSES, dtype=np.float32), intercept])
    fit_s = time.perf_counter() - t0
    loss, acc = network.evaluate(data.train(0), verbose=0)
    val_loss, val_acc = network.evaluate(data.val(), verbose=0)
    row = {"epoch": 1, "loss": float(loss), "accuracy": float(acc), "val_loss": float(val_loss),
           "val_accuracy": float(val_acc), "epoch_seconds": fit_s}
    print(f"lbfgs: one-vs-rest L2 logistic regression (C {l2_c}) on {x.shape[0]} rows x {x.shape[1]} "
          f"features: loss {loss:.4f} acc {acc:.4f} val_acc {val_acc:.4f} ({fit_s:.1f}s)", flush=True)
    return network, [row], 0
