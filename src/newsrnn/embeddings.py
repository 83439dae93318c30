"""Word vectors pre-trained on the training corpus (the notebook's "try word2vec" suggestion).

Word2vec's skip-gram with negative sampling factorises, implicitly, a shifted PMI matrix of
word-context counts (Levy & Goldberg, 2014). Here the factorisation is done explicitly: count
co-occurrences within a window (weighted 1/distance, as word2vec's dynamic window does), turn the
counts into positive PMI with context-distribution smoothing (alpha 0.75), and take a truncated
SVD. It is deterministic, needs no extra package beyond SciPy and takes seconds on AG News.

Columns come ordered by singular value, so an architecture with a smaller ``embed_dim`` takes the
leading columns (a PCA-style projection of the same vectors).
"""

from __future__ import annotations

from typing import Any

# Global standard deviation the vectors are scaled to: the size of Keras' default uniform
# initialisation (+-0.05), so the learning rates tuned for random starts still fit.
TARGET_STD = 0.05


def cooccurrence(rows: list[Any], vocab_size: int, window: int) -> Any:
    """Sparse (vocab, vocab) counts of word pairs at most ``window`` apart, weighted 1/distance.

    Ids 0 (padding) and 1 (unknown word) are never counted.
    """
    import numpy as np
    import scipy.sparse as sp

    # One long sequence with ``window`` zeros between texts: pairs never cross a text boundary.
    gap = np.zeros(window, dtype=np.int64)
    seq = np.concatenate([np.concatenate([np.asarray(r, dtype=np.int64), gap]) for r in rows])
    heads, tails, weights = [], [], []
    for d in range(1, window + 1):
        a, b = seq[:-d], seq[d:]
        keep = (a > 1) & (b > 1)
        heads += [a[keep], b[keep]]
        tails += [b[keep], a[keep]]
        weights += [np.full(2 * int(keep.sum()), 1.0 / d, dtype=np.float64)]
    counts = sp.coo_matrix((np.concatenate(weights), (np.concatenate(heads), np.concatenate(tails))),
                           shape=(vocab_size, vocab_size))
    return counts.tocsr()


def ppmi(counts: Any, alpha: float = 0.75) -> Any:
    """Positive PMI of a sparse count matrix, with context counts raised to ``alpha``."""
    import numpy as np
    import scipy.sparse as sp

    counts = counts.tocoo()
    row = np.asarray(counts.sum(axis=1)).ravel()
    col = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    col_p = col / col.sum()
    # PMI = log(P(i,j) / (P(i) P_alpha(j))) = log(c_ij / (row_i P_alpha(j))): the total cancels.
    pmi = np.log(counts.data) - np.log(row[counts.row]) - np.log(col_p[counts.col])
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def word_vectors(rows: list[Any], vocab_size: int, dim: int, window: int = 5, seed: int = 0) -> Any:
    """(vocab_size, dim) float32 vectors; rows 0 and 1 (padding, unknown) are zero."""
    import numpy as np
    from scipy.sparse.linalg import svds

    if dim >= vocab_size - 2:
        raise ValueError(f"vectorizer.pretrain_dim {dim} must be smaller than the vocabulary ({vocab_size - 2} words)")
    m = ppmi(cooccurrence(rows, vocab_size, window))
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(m.shape))
    u, s, _ = svds(m, k=dim, v0=v0, random_state=seed)
    order = np.argsort(-s)
    vecs = u[:, order] * np.sqrt(s[order])
    # An SVD column's sign is arbitrary; fix it so reruns give the same vectors.
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(dim)])
    vecs = vecs * np.where(signs == 0, 1, signs)
    vecs[:2] = 0.0
    std = vecs[2:].std()
    if std > 0:
        vecs = vecs * (TARGET_STD / std)
    return vecs.astype(np.float32)
