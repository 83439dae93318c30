"""Linear probes with scikit-learn: which text features carry information the models lack?

TF-IDF + logistic regression (C=10) on newsrnn's own prepared splits, one feature set per line:
word 1-2 grams (scikit-learn's tokenizer), with punctuation marks as tokens, character n-grams
within word boundaries (``char_wb``, 2-5) and across them (``char``, 1-5), and the char n-grams of
only the words in newsrnn's 20,000-word vocabulary, lower-cased and stripped of punctuation as
newsrnn's vectorizer does. The 2026-12-01 settings search (a51f158) ran this to decide what the
``wide_char`` member should read (benchmarks/README.md). Each probe's probabilities go to
``--probs`` for ensemble checks.

    python benchmarks/linear_probes.py --work /tmp/newsrnn-explore/tok20000_len128_pt128 --probs /tmp/probs

``--work`` is a directory with ``prepared/`` and ``vectorizer/`` (as benchmarks/explore.py makes).
scikit-learn is a dependency of newsrnn (``solver: lbfgs``).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

PUNCT_WORDS = r"[\w']+|[^\w\s]"  # scikit-learn token pattern: words, and punctuation marks as tokens


def raw_text(df: Any) -> list[str]:
    """Title and description of each row, joined with a space (what newsrnn's models read)."""
    return list((df["title"] + " " + df["description"]).astype(str))


def main() -> None:
    """Fit and score every probe; print one line each."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from newsrnn.data import load_splits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--probs", type=Path)
    args = ap.parse_args()
    splits = load_splits(args.work / "prepared")
    vocab = set((args.work / "vectorizer" / "vocab.txt").read_text(encoding="utf-8").split("\n"))

    def in_vocab(df: Any) -> list[str]:  # about what newsrnn's word vectorizer keeps
        return [" ".join(w for w in re.sub(r"[^\w\s]", "", t.lower()).split() if w in vocab) for t in raw_text(df)]

    probes = {
        "word12": (raw_text, dict(ngram_range=(1, 2))),
        "word12_punct": (raw_text, dict(ngram_range=(1, 2), token_pattern=PUNCT_WORDS)),
        "char_wb25": (raw_text, dict(analyzer="char_wb", ngram_range=(2, 5))),
        "char15": (raw_text, dict(analyzer="char", ngram_range=(1, 5))),
        "char_wb25_vocab_only": (in_vocab, dict(analyzer="char_wb", ngram_range=(2, 5))),
    }
    for name, (texts, kwargs) in probes.items():
        t0 = time.perf_counter()
        train, val, test = (texts(df) for df in splits)
        vec = TfidfVectorizer(min_df=2, sublinear_tf=True, **kwargs)
        model = LogisticRegression(C=10, max_iter=2000).fit(vec.fit_transform(train), splits[0]["label"])
        pv, pt = (model.predict_proba(vec.transform(x)) for x in (val, test))
        acc = [float(np.mean(p.argmax(1) == df["label"].to_numpy())) for p, df in ((pv, splits[1]), (pt, splits[2]))]
        print(f"{name:24s} val {acc[0]:.4f} test {acc[1]:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
        if args.probs:
            args.probs.mkdir(parents=True, exist_ok=True)
            np.savez(args.probs / f"sk_{name}.npz", val=pv, test=pt)


if __name__ == "__main__":
    main()
