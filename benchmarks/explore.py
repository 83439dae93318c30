"""Settings search for newsrnn on the real data, one configuration per child process.

Each configuration is params.yaml with overrides (dotted keys, e.g. ``train.batch_size`` or
``architectures.lstm.pooling``), trained by the library exactly as in ``newsrnn bench``
(``benchmarks/harness.py``, ``run_newsrnn``). Selection is on validation accuracy; test accuracy and the time
to reach the notebook's one-epoch test accuracy are recorded alongside. One JSON line per run.

    python benchmarks/explore.py --data-dir ../shared/data/ag_news_csv --plan plan.json \
        --work /tmp/newsrnn-explore --out benchmarks/results/explore_2026-11-28_7d83f01.jsonl

``plan.json`` is a list of ``{"name", "arch", "overrides"}`` objects.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

# The notebook's one-epoch test accuracy measured side by side on this machine (the reference run).
NOTEBOOK_TARGETS = {"rnn_title": 0.7642, "rnn": 0.8351, "lstm": 0.8703, "bilstm": 0.8855, "gru": 0.8703,
                    "cnn": 0.8703, "wide": 0.8703, "wide_char": 0.8703, "wide_word": 0.8703}


def with_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``params`` with dotted-key overrides applied."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return out


def main() -> None:
    """Prepare the data once per vectorizer setting, then run every planned configuration."""
    import yaml
    from harness import _child  # benchmarks/harness.py, beside this script

    from newsrnn.config import config_from_dict, config_to_dict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    base = config_to_dict(config_from_dict(yaml.safe_load(Path(args.params).read_text())))
    plan = json.loads(Path(args.plan).read_text())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for item in plan:
        params = with_overrides(base, item.get("overrides", {}))
        config_from_dict(params)  # validate before spending minutes on it
        vec = params["vectorizer"]
        pre = f"_pt{vec['pretrain_dim']}" if vec.get("pretrain_dim") else ""
        std = "_punct" if vec.get("standardize") == "lower_split_punctuation" else ""
        work = Path(args.work) / f"tok{vec['max_tokens']}_len{vec['max_length']}{pre}{std}"
        if not (work / "vectorizer" / "config.json").exists():
            work.mkdir(parents=True, exist_ok=True)
            _child("prepare", {"params": params, "data_dir": str(Path(args.data_dir).resolve()),
                               "max_train_rows": None}, work)
        t = time.perf_counter()
        try:
            res = _child("newsrnn", {"arch": item["arch"], "params": params, "eval_fraction": 0.1,
                                     "target": NOTEBOOK_TARGETS[item["arch"]],
                                     "spec_tag": item["name"],
                                     "model_out": str(Path(args.work) / "models" / item["name"])}, work)
        except Exception as exc:  # one bad configuration should not stop the sweep
            res = {"error": str(exc)[-800:]}
        row = {"name": item["name"], "arch": item["arch"], "overrides": item.get("overrides", {}),
               "wall_s": time.perf_counter() - t, **res}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{item['name']}: val {res.get('val_accuracy')} test {res.get('test_accuracy')} "
              f"epoch {res.get('mean_epoch_s')} to-target {res.get('time_to_target_s')}", flush=True)


if __name__ == "__main__":
    main()
