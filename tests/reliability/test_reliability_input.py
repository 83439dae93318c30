"""Reliability, bad input (cases 1-5): malformed data, odd requests, NaN losses, leakage and
bad params end in a clear, located error or a bounded, recorded rejection; never silent damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rel_support import newsrnn, run, small_params, write_corpus, write_params

GOOD = b'"1","Troops talks","minister says peace talks resume"\n'


def _rows(n: int) -> bytes:
    """``n`` valid rows cycling through the 4 classes."""
    rows = (f'"{i % 4 + 1}","title {i} market","description {i} game win"\n' for i in range(n))
    return "".join(rows).encode()


def _bad_train_csv() -> tuple[bytes, dict[int, str]]:
    """A train.csv with one bad row of each kind, and the problem expected at each line."""
    lines = [
        GOOD,                                              # 1 ok
        b'"2","only two fields"\n',                        # 2 wrong field count
        b'"3","a","b","extra"\n',                          # 3 wrong field count
        b'"4","stray "quote" inside","desc"\n',            # 4 stray quote
        b'"0","zero label","desc"\n',                      # 5 label 0
        b'"5","five label","desc"\n',                      # 6 label 5
        b'"Sports","named label","desc"\n',                # 7 label by name
        b'"1","bad \xff\xfe bytes","desc"\n',              # 8 not UTF-8
        b'"2","","   "\n',                                 # 9 empty / whitespace-only text
        b'"3","  \t ","\t"\n',                             # 10 whitespace-only text
        _rows(1),                                          # 11 ok
    ]
    expected = {2: "expected 3 fields", 3: "expected 3 fields", 4: "malformed CSV", 5: "class must be 1-4",
                6: "class must be 1-4", 7: "class must be 1-4", 8: "not valid UTF-8", 9: "empty text",
                10: "empty text"}
    return b"".join(lines), expected


def test_case01_malformed_rows_named_by_file_line_problem(tmp_path: Path) -> None:
    """Every bad row is reported with file, line and problem; the CLI prints it without a traceback."""
    corpus = write_corpus(tmp_path / "csv", n_train=40, n_test=20)
    data, expected = _bad_train_csv()
    (corpus / "train.csv").write_bytes(data)
    write_params(tmp_path, small_params(**{"data.sources": ["local"], "data.local_dir": str(corpus)}))

    proc = run(newsrnn("fetch"), tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for line, problem in expected.items():
        located = [ln for ln in proc.stderr.splitlines() if f"train.csv:{line}:" in ln]
        assert located, f"line {line} ({problem}) not reported:\n{proc.stderr}"
        assert problem in located[0], located[0]
    assert "train.csv:1:" not in proc.stderr and "train.csv:11:" not in proc.stderr
    assert not (tmp_path / "data" / "raw" / "train.parquet").exists()


def test_case01_rejects_file_within_threshold_and_fail_above(tmp_path: Path) -> None:
    """With a reject rate allowed, bad rows go to rejects_train.jsonl and good rows keep their columns;
    above the rate the stage fails and writes nothing."""
    from newsrnn.config import config_from_dict
    from newsrnn.errors import DataError
    from newsrnn.fetch import fetch

    corpus = write_corpus(tmp_path / "csv", n_train=40, n_test=20)
    bad, expected = _bad_train_csv()
    good = _rows(200)
    (corpus / "train.csv").write_bytes(good + bad)  # 9 bad of 211 rows: 4.3 %
    base = {"data.sources": ["local"], "data.local_dir": str(corpus)}
    out = tmp_path / "raw"

    cfg = config_from_dict(small_params(**base, **{"data.max_reject_fraction": 0.05}))
    fetch(cfg.data, out, tmp_path / "dl")
    rejects = [json.loads(x) for x in (out / "rejects_train.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in rejects) == [200 + k for k in expected]
    train = pd.read_parquet(out / "train.parquet")
    assert len(train) == 202
    # Columns never shift: every kept row has a 0-3 label and its own title/description.
    assert set(train["label"]) <= {0, 1, 2, 3}
    assert train["title"].str.match(r"^(title \d+ market|Troops talks)$").all()
    assert not train["description"].str.contains("extra|fields").any()

    out2 = tmp_path / "raw2"
    with pytest.raises(DataError, match=r"9 bad row\(s\) of 211"):
        fetch(config_from_dict(small_params(**base, **{"data.max_reject_fraction": 0.02})).data, out2,
              tmp_path / "dl")
    assert not (out2 / "train.parquet").exists()


def test_case01_unclosed_quote_does_not_swallow_following_rows(tmp_path: Path) -> None:
    """A quote left open must cost one row, not silently absorb the valid rows after it."""
    from newsrnn.corpus import read_agnews_csv

    path = tmp_path / "train.csv"
    path.write_bytes(_rows(3) + b'"2","unclosed quote, desc\n' + _rows(4))  # 7 good rows, 1 bad at line 4
    rejects = tmp_path / "rejects.jsonl"
    df = read_agnews_csv(path, max_reject_fraction=0.5, rejects_path=rejects)
    bad = [json.loads(x) for x in rejects.read_text().splitlines()] if rejects.exists() else []
    assert [b["line"] for b in bad] == [4], bad
    assert len(df) == 7, f"valid rows lost after the unclosed quote: kept lines {df['line'].tolist()}"


@pytest.fixture(scope="module")
def predictor(trained):
    """A Predictor on the session's trained model."""
    from newsrnn.predictor import Predictor

    return Predictor.from_path(trained.model_dir, max_batch=50)


def test_case02_predict_empty_long_and_oversized_inputs(predictor, trained) -> None:
    """Empty text -> 4 probabilities summing to 1; 1 MB text answers like its first tokens; a batch over
    the cap and non-strings are refused with a clear error."""
    probs = predictor.predict_proba(["", "   "])
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert np.isfinite(probs).all()

    words = "stocks profit oil shares market bank game season coach team".split()
    long_text = " ".join(words[i % len(words)] for i in range(200_000))[: 1 << 20]
    assert len(long_text.encode()) == 1 << 20
    head = " ".join(long_text.split()[:200])
    p_long, p_head = predictor.predict_proba([long_text, head])
    np.testing.assert_allclose(p_long, p_head, rtol=1e-5, atol=1e-6)  # only the first max_length tokens count

    with pytest.raises(ValueError, match="limit is 50"):
        predictor.predict_proba(["x"] * 51)
    with pytest.raises(TypeError, match="expected a string"):
        predictor.predict_proba(["ok", 123])

    # The CLI answers an empty string too.
    proc = run(newsrnn("predict", "--json", "--model", str(trained.model_dir), ""), trained.root)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4


@pytest.mark.slow
def test_case02_served_model_http_errors(trained, tmp_path: Path) -> None:
    """``mlflow models serve`` on the logged pyfunc: empty text answers, 1 MB answers, over-cap batch,
    numbers and a missing column get a 4xx with a message, never a 5xx or an OOM."""
    import requests
    from rel_support import free_port, serve_logged_model

    with serve_logged_model(trained, tmp_path, free_port()) as url:
        def post(payload: dict) -> requests.Response:
            return requests.post(f"{url}/invocations", json=payload, timeout=120)

        ok = post({"dataframe_split": {"columns": ["text"], "data": [[""], ["Stocks rally as oil falls"]]}})
        assert ok.status_code == 200, ok.text
        preds = ok.json()["predictions"]
        assert len(preds) == 2
        for row in preds:
            assert abs(sum(row[c] for c in ("World", "Sports", "Business", "Sci/Tech")) - 1) < 1e-4

        big = post({"dataframe_split": {"columns": ["text"], "data": [["market " * (1 << 17)]]}})
        assert big.status_code == 200, big.text[:500]

        from newsrnn.serving import MAX_BATCH

        over = post({"dataframe_split": {"columns": ["text"], "data": [["a"]] * (MAX_BATCH + 1)}})
        assert 400 <= over.status_code < 500, over.status_code
        assert "limit" in over.text

        numbers = post({"dataframe_split": {"columns": ["text"], "data": [[1], [2.5]]}})
        assert 400 <= numbers.status_code < 500, (numbers.status_code, numbers.text[:300])
        missing = post({"dataframe_split": {"columns": ["body"], "data": [["Stocks rally"]]}})
        assert 400 <= missing.status_code < 500, (missing.status_code, missing.text[:300])
        assert "text" in missing.text


def _mlflow_runs(db: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def test_case03_nan_loss_stops_training_and_exports_nothing(trained, tmp_path: Path) -> None:
    """An absurd learning rate makes the loss NaN: the run stops with a clear error, is marked FAILED in
    MLflow, and leaves no model to evaluate or register."""
    proj = trained.copy_to(tmp_path / "p", **{"train.learning_rate": 1e38, "train.epochs": 3,
                                              "mlflow.enabled": True})
    proc = run(newsrnn("train", "rnn_title"), proj)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "loss became nan in epoch 1" in proc.stderr and "lower the learning rate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (proj / "artifacts" / "models" / "rnn_title").exists()
    assert "epoch 2/3" not in proc.stdout
    runs = _mlflow_runs(proj / "mlflow.db")
    assert [r.info.status for r in runs] == ["FAILED"]
    proc = run(newsrnn("register"), proj)
    assert proc.returncode == 2 and "not found" in proc.stderr


@pytest.mark.slow
def test_case03_nan_trials_fail_and_study_continues(trained, tmp_path: Path) -> None:
    """In tuning, NaN trials are recorded FAIL, the study runs its whole budget, and no params come out."""
    # Trial 0 is the architecture's own settings: its rate must be absurd too.
    proj = trained.copy_to(tmp_path / "p", **{"tune.n_trials": 3, "tune.learning_rate": [1e37, 1e38],
                                              "architectures.rnn_title.learning_rate": 1e37,
                                              "tune.pruning": False})
    proc = run(newsrnn("tune", "rnn_title"), proj, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tuned = yaml.safe_load((proj / "artifacts" / "tuned" / "rnn_title.yaml").read_text())
    assert tuned["n_trials"] == 3
    assert tuned["states"] == {"FAIL": 3}
    assert tuned["params"] == {} and tuned["best_value"] is None


def test_case04_leakage_refused_or_dropped(tmp_path: Path) -> None:
    """Test rows copied into train (also with other case and spacing) make prepare fail with the lines
    (leakage: error), or are dropped and counted (leakage: drop); none reaches train or val."""
    from newsrnn.config import config_from_dict
    from newsrnn.errors import DataError
    from newsrnn.fetch import fetch
    from newsrnn.prepare import _key, prepare

    corpus = write_corpus(tmp_path / "csv", n_train=200, n_test=60)
    test_lines = (corpus / "test.csv").read_text().splitlines()
    leaked = [test_lines[0], test_lines[1].upper(), test_lines[2].replace(" ", "  ")]
    with open(corpus / "train.csv", "a", encoding="utf-8") as f:
        f.write("\n".join(leaked) + "\n")
    base = {"data.sources": ["local"], "data.local_dir": str(corpus)}
    cfg = config_from_dict(small_params(**base, **{"data.leakage": "error"}))
    fetch(cfg.data, tmp_path / "raw", tmp_path / "dl")

    with pytest.raises(DataError, match=r"3 row\(s\) also appear in test.csv \(lines 201, 202, 203\)"):
        prepare(cfg.data, cfg.seed, tmp_path / "raw", tmp_path / "prep_err")
    assert not (tmp_path / "prep_err" / "train.parquet").exists()

    cfg = config_from_dict(small_params(**base, **{"data.leakage": "drop"}))
    result = prepare(cfg.data, cfg.seed, tmp_path / "raw", tmp_path / "prep")
    assert result.leaked_dropped == 3
    test_keys = set(_key(pd.read_parquet(tmp_path / "prep" / "test.parquet")))
    for split in ("train", "val"):
        df = pd.read_parquet(tmp_path / "prep" / f"{split}.parquet")
        assert not _key(df).isin(test_keys).any(), split
    assert result.train_rows + result.val_rows == 200


@pytest.mark.parametrize(("override", "message"), [
    ({"train.epochs_typo": 3}, "train.epochs_typo: unknown key"),
    ({"train.epochs": "three"}, "train.epochs: expected an integer, got 'three'"),
    ({"train.epochs": -3}, "train.epochs: expected an integer >= 1, got -3"),
    ({"data.val_fraction": 1.5}, "data.val_fraction: expected a number between 0 and 1"),
    ({"models": ["rnn_title", "transformer"]}, "models[1]: unknown architecture 'transformer'"),
    ({"architectures.rnn_title.cell": "transformer"}, "architectures.rnn_title.cell: expected one of"),
    ({"architectures.transformer": {"cell": "lstm"}}, "architectures.transformer: unknown architecture"),
    ({"tune.learning_rate": [0.1]}, "tune.learning_rate: expected a list of 2 values"),
])
def test_case05_bad_params_name_the_key(tmp_path: Path, override: dict, message: str) -> None:
    """Unknown keys, wrong types, unknown architectures and impossible values: one line with the key path."""
    from newsrnn.config import load_config
    from newsrnn.errors import ConfigError

    params = small_params()
    for dotted, value in override.items():
        node = params
        *parents, last = dotted.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    write_params(tmp_path, params)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "params.yaml")
    assert message in str(err.value)
    assert str(tmp_path / "params.yaml") in str(err.value)
