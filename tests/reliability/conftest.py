"""Fixtures for the reliability suite: one tiny trained project shared by the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rel_support import TRAIN_DEFAULTS, Trained, postgres_url, small_params, write_corpus, write_params


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """fetch -> prepare -> vectorize -> train rnn_title on a tiny corpus, in-process, once."""
    root = tmp_path_factory.mktemp("trained")
    corpus = write_corpus(root / "corpus", n_train=400, n_test=120)
    overrides = {"data.sources": ["local"], "data.local_dir": str(corpus), "models": ["rnn_title"],
                 "mlflow.enabled": False, "mlflow.tracking_uri": "sqlite:///mlflow.db", **TRAIN_DEFAULTS}
    params = small_params(**overrides)
    proj = root / "project"
    proj.mkdir()
    write_params(proj, params)
    old = Path.cwd()
    os.chdir(proj)  # the stages' default paths are relative to the project root
    try:
        from newsrnn.config import config_from_dict
        from newsrnn.fetch import fetch
        from newsrnn.prepare import prepare
        from newsrnn.train import train
        from newsrnn.vectorize import vectorize

        cfg = config_from_dict(params)
        fetch(cfg.data)
        prepare(cfg.data, cfg.seed)
        vectorize(cfg.vectorizer)
        train(cfg, "rnn_title")
    finally:
        os.chdir(old)
    return Trained(proj, params, corpus)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL URL, or skip."""
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432 (trust auth, db test)")
    return url
