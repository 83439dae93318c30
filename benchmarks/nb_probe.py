"""NB-SVM probes (Wang & Manning 2012) with scikit-learn: would a Naive-Bayes-scaled linear model
be an ensemble member that errs unlike ``wide`` and ``wide_char``?

For each class, one-vs-rest logistic regression on TF-IDF features scaled by the class's
log-count ratio r = log((p / |p|) / (q / |q|)) (p, q: smoothed counts of texts holding each
feature, in the class and outside it); the four decision values go through a softmax. Fitted on
the prepared train split only. Each probe's val/test probabilities go to
``<work>/probs/<name>_s<seed>.npz``, where ``benchmarks/member_search.py`` reads them as one more
member (the probes have no randomness; the seed only pairs them with the saved models).

    python benchmarks/nb_probe.py --work /tmp/newsrnn-explore \
        --prepared /tmp/newsrnn-explore/tok20000_len128_pt128/prepared

scikit-learn is a dependency of newsrnn (``solver: lbfgs``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from linear_probes import PUNCT_WORDS, raw_text  # benchmarks/linear_probes.py, beside this script

PROBES = {
    "nbsvm_w12": dict(ngram_range=(1, 2), token_pattern=PUNCT_WORDS),
    "nbsvm_w13": dict(ngram_range=(1, 3), token_pattern=PUNCT_WORDS),
    "nbsvm_c25": dict(analyzer="char_wb", ngram_range=(2, 5), min_df=2),
}


def nbsvm_probs(train: list[str], y: Any, others: list[list[str]], vec_kwargs: dict[str, Any],
                c: float = 4.0, alpha: float = 1.0) -> list[Any]:
    """Class probabilities of an NB-scaled one-vs-rest logistic regression for each of ``others``."""
    import numpy as np
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(sublinear_tf=True, **vec_kwargs)
    x = vec.fit_transform(train)
    xs = [vec.transform(t) for t in others]
    present = (x > 0).astype(np.float64)
    scores: list[list[Any]] = [[] for _ in others]
    for k in range(int(y.max()) + 1):
        p = alpha + np.asarray(present[y == k].sum(0)).ravel()
        q = alpha + np.asarray(present[y != k].sum(0)).ravel()
        scale = sparse.diags(np.log((p / p.sum()) / (q / q.sum())))
        model = LogisticRegression(C=c, max_iter=3000).fit(x @ scale, (y == k).astype(int))
        for s, xo in zip(scores, xs):
            s.append(model.decision_function(xo @ scale))
    out = []
    for s in scores:
        z = np.stack(s, 1)
        e = np.exp(z - z.max(1, keepdims=True))
        out.append(e / e.sum(1, keepdims=True))
    return out


def main() -> None:
    import numpy as np

    from newsrnn.data import load_splits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="explore.py's --work directory")
    ap.add_argument("--prepared", required=True, type=Path, help="the prepared split the models trained on")
    ap.add_argument("--probes", default=",".join(PROBES), help=f"comma-separated, of {', '.join(PROBES)}")
    ap.add_argument("--seed", type=int, default=42, help="the suffix member_search pairs the probes by")
    args = ap.parse_args()
    names = [n for n in args.probes.split(",") if n]
    unknown = [n for n in names if n not in PROBES]
    if unknown or not names:
        sys.exit(f"nb_probe: --probes: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(PROBES)}")
    if not (args.prepared / "train.parquet").exists():
        sys.exit(f"nb_probe: --prepared {args.prepared}: no train.parquet (run newsrnn prepare or explore.py first)")
    splits = load_splits(args.prepared)
    texts = [raw_text(df) for df in splits]
    labels = [df["label"].to_numpy() for df in splits]
    (args.work / "probs").mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.perf_counter()
        pv, pt = nbsvm_probs(texts[0], labels[0], texts[1:], PROBES[name])
        acc = [float(np.mean(p.argmax(1) == y)) for p, y in ((pv, labels[1]), (pt, labels[2]))]
        np.savez(args.work / "probs" / f"{name}_s{args.seed}.npz", val=pv, test=pt)
        print(f"{name:12s} val {acc[0]:.4f} test {acc[1]:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
