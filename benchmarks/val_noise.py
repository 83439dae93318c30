"""How much of a validation gain is noise? Paired differences and held-out checks of selection.

For trained models (``NAME=DIR``, each a ``newsrnn train`` / ``tune`` model directory) on the same
prepared splits, it prints:

- each model's val and test accuracy;
- for each ``--pair A,B``: A's val gain over B, the paired standard error of that gain
  (sqrt(rows where A and B disagree) / rows), and A's test gain;
- selection on half of val, scored on the other half (both ways round, 5 random halves): the best
  subset of the models (mean probability, 2 or more members) and the best weighted mean (weights
  0, 0.5, 1, 2) against ``--configured``. A selection that pays scores better on the held-out
  half than the configured members do; one that only fits the noise does not.

    NEWSRNN_BENCH_KEEP_MODELS=/tmp/keep newsrnn bench --pipeline --data-dir ../shared/data/ag_news_csv
    python benchmarks/val_noise.py --prepared /tmp/keep/tuning_off/prepared \\
        --models lstm=/tmp/keep/tuning_off/models/lstm wide=/tmp/keep/tuning_off/models/wide \\
        wide_char=/tmp/keep/tuning_off/models/wide_char lstm_tuned=/tmp/keep/tuning_on/models/lstm \\
        --pair lstm_tuned,lstm --configured lstm,wide,wide_char
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any, NoReturn

WEIGHTS = (0.0, 0.5, 1.0, 2.0)
HALVES = 5


def _fail(msg: str) -> NoReturn:
    print(f"val_noise: {msg}", file=sys.stderr)
    raise SystemExit(2)


def model_probs(models: dict[str, Path], prepared: Path, cfg: Any) -> tuple[dict[str, Any], Any, Any]:
    """Val and test probabilities of every model (fed the text its architecture reads), and the
    two label arrays."""
    import json

    from newsrnn.data import load_splits, texts_of
    from newsrnn.predictor import Predictor

    _, val, test = load_splits(prepared)
    probs = {}
    for name, d in models.items():
        arch = cfg.arch(json.loads((d / "train.json").read_text())["arch"])
        pred = Predictor.from_path(d, max_batch=max(len(val), len(test)))
        probs[name] = (pred.predict_proba(list(texts_of(val, arch))), pred.predict_proba(list(texts_of(test, arch))))
    return probs, val["label"].to_numpy(), test["label"].to_numpy()


def mean_accuracy(parts: list[Any], weights: tuple[float, ...], labels: Any) -> float:
    import numpy as np

    mixed = sum(w * p for w, p in zip(weights, parts, strict=True))
    return float(np.mean(np.asarray(mixed).argmax(1) == labels))


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", required=True, type=Path)
    ap.add_argument("--models", required=True, nargs="+", metavar="NAME=DIR")
    ap.add_argument("--pair", action="append", default=[], metavar="A,B")
    ap.add_argument("--configured", required=True, metavar="A,B,...")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="for each architecture's text field")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from newsrnn.config import load_config
    from newsrnn.errors import NewsrnnError

    try:
        cfg = load_config(args.params)
    except NewsrnnError as exc:
        _fail(str(exc))
    models = {}
    for item in args.models:
        name, _, path = item.partition("=")
        if not path or not (Path(path) / "train.json").is_file():
            _fail(f"--models {item}: expected NAME=DIR with DIR/train.json")
        models[name] = Path(path)
    configured = args.configured.split(",")
    for name in configured + [n for p in args.pair for n in p.split(",")]:
        if name not in models:
            _fail(f"{name}: not among --models ({', '.join(models)})")
    if not (args.prepared / "val.parquet").is_file():
        _fail(f"{args.prepared}: no val.parquet (a data/prepared directory is expected)")

    probs, yv, yt = model_probs(models, args.prepared, cfg)
    names = list(models)
    for n in names:
        val, test = mean_accuracy([probs[n][0]], (1.0,), yv), mean_accuracy([probs[n][1]], (1.0,), yt)
        print(f"{n}: val {val:.4f} test {test:.4f}")
    for pair in args.pair:
        a, b = pair.split(",")
        pa, pb = probs[a][0].argmax(1), probs[b][0].argmax(1)
        gain = np.mean(pa == yv) - np.mean(pb == yv)
        se = np.sqrt(np.sum(pa != pb)) / len(yv)
        tgain = np.mean(probs[a][1].argmax(1) == yt) - np.mean(probs[b][1].argmax(1) == yt)
        print(f"{a} - {b}: val {100 * gain:+.2f} pts (paired s.e. {100 * se:.2f} pts, {np.sum(pa != pb)} rows "
              f"disagree), test {100 * tgain:+.2f} pts")

    subsets = [s for k in range(2, len(names) + 1) for s in itertools.combinations(names, k)]
    grids = [w for w in itertools.product(WEIGHTS, repeat=len(names)) if sum(1 for x in w if x) >= 2]
    rng = np.random.default_rng(args.seed)
    held = {"subset": [], "weights": [], "configured": []}
    for _ in range(HALVES):
        idx = rng.permutation(len(yv))
        for fit, ev in ((idx[: len(yv) // 2], idx[len(yv) // 2:]), (idx[len(yv) // 2:], idx[: len(yv) // 2])):
            best_s = max(subsets, key=lambda s: mean_accuracy([probs[n][0][fit] for n in s], (1.0,) * len(s), yv[fit]))
            best_w = max(grids, key=lambda w: mean_accuracy([probs[n][0][fit] for n in names], w, yv[fit]))
            held["subset"].append(mean_accuracy([probs[n][0][ev] for n in best_s], (1.0,) * len(best_s), yv[ev]))
            held["weights"].append(mean_accuracy([probs[n][0][ev] for n in names], best_w, yv[ev]))
            held["configured"].append(mean_accuracy([probs[n][0][ev] for n in configured], (1.0,) * len(configured),
                                                    yv[ev]))
    base = np.array(held["configured"])
    print(f"held-out half of val, {len(base)} splits: configured {', '.join(configured)} mean {base.mean():.4f}")
    for key in ("subset", "weights"):
        diff = np.array(held[key]) - base
        print(f"  best {key} chosen on the other half: mean {np.mean(held[key]):.4f} "
              f"({100 * diff.mean():+.2f} pts vs configured; better in {int(np.sum(diff > 0))} of {len(diff)})")


if __name__ == "__main__":
    main()
