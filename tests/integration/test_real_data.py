"""A capped-row end-to-end run on the real corpus (skipped where ../shared/data/ag_news_csv is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import small_params

from newsrnn.config import config_from_dict


@pytest.mark.realdata
@pytest.mark.slow
def test_capped_real_data_end_to_end(real_data: Path, tmp_path: Path) -> None:
    from newsrnn.evaluate import evaluate
    from newsrnn.fetch import fetch
    from newsrnn.prepare import prepare
    from newsrnn.train import train
    from newsrnn.vectorize import vectorize

    cfg = config_from_dict(small_params(**{
        "data.local_dir": str(real_data), "data.max_train_rows": 4000, "vectorizer.max_tokens": 5000,
        "architectures.gru.embed_dim": 32, "architectures.gru.units": 32, "vectorizer.pretrain_dim": 32,
        "train.epochs": 2,
        "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}))
    res = fetch(cfg.data, out_dir=tmp_path / "raw")
    assert (res.train_rows, res.test_rows) == (35937, 7600)
    info = json.loads((tmp_path / "raw" / "source.json").read_text())
    assert info["sha256"]["test.csv"] == "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699"
    assert info["class_counts"]["test"] == {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}
    p = prepare(cfg.data, cfg.seed, raw_dir=tmp_path / "raw", out_dir=tmp_path / "prepared")
    assert p.train_rows + p.val_rows == 4000 and p.test_rows == 7600
    vectorize(cfg.vectorizer, tmp_path / "prepared", tmp_path / "vec")
    train(cfg, "gru", tmp_path / "prepared", tmp_path / "vec", None, tmp_path / "models" / "gru", tmp_path / "ckpt")
    m = evaluate(cfg, "gru", tmp_path / "prepared", tmp_path / "models" / "gru", tmp_path / "gru.json",
                 tmp_path / "plots")
    # 4,000 rows and 2 small epochs: far above chance (0.25), far below the full run.
    assert m["test_accuracy"] > 0.6, m["test_accuracy"]
