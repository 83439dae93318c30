"""One small real pipeline run: the MLflow store the UI, report, lineage and promotion tests share.

Kept out of conftest.py so tests can import its constants (two conftest modules exist).
"""

from __future__ import annotations

import os
from pathlib import Path

from support import small_params

STORE_ARCHS = ["rnn_title", "gru", "wide"]
KFP_RUN_ID = "kfp-run-0a1b2c"
DVC_EXP_NAME = "exp-lineage"


def build_store(root: Path) -> dict:
    """fetch -> prepare -> vectorize -> train -> evaluate (3 architectures) -> register -> report.

    Runs as if under ``dvc exp run`` on Kubeflow (the environment both set), into a SQLite MLflow
    store, in the stage layout (metrics/, plots/, artifacts/) of a project root.
    """
    import yaml
    from synthetic import write_corpus

    from newsrnn.config import config_from_dict
    from newsrnn.evaluate import evaluate
    from newsrnn.fetch import fetch
    from newsrnn.prepare import prepare
    from newsrnn.register import register
    from newsrnn.report import report
    from newsrnn.train import train
    from newsrnn.vectorize import vectorize

    corpus = write_corpus(root / "csv", n_train=320, n_test=80)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    params = small_params(**{"data.local_dir": str(corpus), "models": STORE_ARCHS, "mlflow.tracking_uri": uri,
                             "train.epochs": 2, "train.early_stopping_patience": 5})
    cfg = config_from_dict(params)
    from mlflow import MlflowClient

    # Artifacts beside the store, not in ./mlruns of whatever directory pytest runs in.
    MlflowClient(uri).create_experiment(cfg.mlflow.experiment, artifact_location=(root / "mlruns").as_uri())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    saved = {k: os.environ.get(k) for k in ("NEWSRNN_KFP_RUN_ID", "DVC_EXP_NAME")}
    os.environ.update(NEWSRNN_KFP_RUN_ID=KFP_RUN_ID, DVC_EXP_NAME=DVC_EXP_NAME)
    try:
        fetch(cfg.data, out_dir=root / "data/raw")
        prepare(cfg.data, cfg.seed, raw_dir=root / "data/raw", out_dir=root / "data/prepared")
        vectorize(cfg.vectorizer, root / "data/prepared", root / "artifacts/vectorizer")
        for arch in cfg.models:
            train(cfg, arch, root / "data/prepared", root / "artifacts/vectorizer", None,
                  root / "artifacts/models" / arch, root / "ckpt" / arch)
            evaluate(cfg, arch, root / "data/prepared", root / "artifacts/models" / arch,
                     root / "metrics" / f"{arch}.json", root / "plots" / arch)
        candidates = [(root / "metrics" / f"{a}.json", root / "artifacts/models" / a) for a in cfg.models]
        champion = register(cfg, candidates, out_path=root / "artifacts/champion.json")
        page = report(cfg, root / "metrics", root / "plots", root / "artifacts/champion.json",
                      root / "reports/index.html")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"root": root, "cfg": cfg, "uri": uri, "params": params, "champion": champion, "report": page,
            "candidates": candidates}
