"""Which ensemble members: every subset of saved models, scored on val (and test), per seed.

Reads the models ``benchmarks/explore.py`` saved (``<work>/models/<arch>_s<seed>``, trained on
the split in ``<prepared>``), caches each one's val/test probabilities (``<work>/probs``), and
prints, for every subset of ``--archs`` with two or more members, the accuracy of the mean of
their probabilities for each seed and the mean over seeds, best mean val first. Also the seed
ensembles (one architecture, its seeds averaged). Choices are made on val; test is reported.

    python benchmarks/member_search.py --work /tmp/newsrnn-explore \
        --prepared /tmp/newsrnn-explore/tok20000_len128_pt128/prepared \
        --archs lstm,wide,wide_char,rnn,bilstm,cnn --seeds 42,43,44 --top 15
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any


def probabilities(work: Path, prepared: Path, names: list[str], params: Path) -> dict[str, Any]:
    """``{name: {"val": probs, "test": probs}}``, computed once per saved model and cached."""
    import numpy as np

    from newsrnn.config import ArchConfig, load_config
    from newsrnn.data import load_splits, texts_of
    from newsrnn.predictor import Predictor

    cfg = load_config(params)
    _, val_df, test_df = load_splits(prepared)
    cache = work / "probs"
    cache.mkdir(exist_ok=True)
    out = {}
    for name in names:
        path = cache / f"{name}.npz"
        if not path.exists():
            model_dir = work / "models" / name
            if not (model_dir / "model.keras").exists():
                raise SystemExit(f"member_search: {model_dir}: no saved model (run benchmarks/explore.py "
                                 f"with a plan entry named {name!r} first)")
            prefix = name.rsplit("_s", 1)[0]
            # A variant explored under a name of its own (e.g. widenb: wide with nb weighting)
            # reads what a section's default reads, title + description.
            arch = cfg.candidate(prefix) if prefix in cfg.architectures else ArchConfig()
            pred = Predictor.from_path(model_dir, max_batch=len(test_df))
            np.savez(path, val=pred.predict_proba(list(texts_of(val_df, arch))),
                     test=pred.predict_proba(list(texts_of(test_df, arch))))
        with np.load(path) as f:
            out[name] = {"val": f["val"], "test": f["test"]}
    out["_labels"] = {"val": val_df["label"].to_numpy(), "test": test_df["label"].to_numpy()}
    return out


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="explore.py's --work directory")
    ap.add_argument("--prepared", required=True, type=Path, help="the prepared split the models trained on")
    ap.add_argument("--archs", required=True, help="comma-separated architectures")
    ap.add_argument("--seeds", default="42", help="comma-separated seeds (models <arch>_s<seed>)")
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    archs = [a for a in args.archs.split(",") if a]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        sys.exit(f"member_search: --seeds: expected comma-separated integers, got {args.seeds!r}")
    if len(archs) < 2 or not seeds:
        sys.exit("member_search: --archs needs two or more architectures and --seeds one or more seeds")
    probs = probabilities(args.work, args.prepared, [f"{a}_s{s}" for a in archs for s in seeds], args.params)
    labels = probs["_labels"]

    def accuracy(names: list[str], split: str) -> float:
        mean = np.mean([probs[n][split] for n in names], axis=0)
        return float(np.mean(mean.argmax(1) == labels[split]))

    print("single models and seed ensembles (val / test):")
    for a in archs:
        singles = "  ".join(f"s{s} {accuracy([f'{a}_s{s}'], 'val'):.4f} / {accuracy([f'{a}_s{s}'], 'test'):.4f}"
                            for s in seeds)
        every = [f"{a}_s{s}" for s in seeds]
        print(f"  {a:10s} {singles}  | all {len(seeds)} seeds averaged {accuracy(every, 'val'):.4f} / "
              f"{accuracy(every, 'test'):.4f}")
    rows = []
    for k in range(2, len(archs) + 1):
        for subset in itertools.combinations(archs, k):
            per = [(accuracy([f"{a}_s{s}" for a in subset], "val"), accuracy([f"{a}_s{s}" for a in subset], "test"))
                   for s in seeds]
            rows.append((float(np.mean([v for v, _ in per])), float(np.mean([t for _, t in per])), subset, per))
    rows.sort(key=lambda r: (-r[0], len(r[2])))
    print(f"\nsubsets, best mean val over seeds {', '.join(map(str, seeds))} first (mean val / mean test; per seed):")
    for val, test, subset, per in rows[: args.top]:
        each = ", ".join(f"{v:.4f}/{t:.4f}" for v, t in per)
        print(f"  {val:.4f} / {test:.4f}  {' + '.join(subset)}  ({each})")


if __name__ == "__main__":
    main()
