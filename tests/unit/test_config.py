"""Config loading: strict keys, types, values, with the key path in every message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support import ROOT, small_params

from newsrnn.config import config_from_dict, load_config
from newsrnn.errors import ConfigError


def test_repo_params_load() -> None:
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.models == ("rnn_title", "rnn", "lstm", "bilstm", "wide_char", "wide_word")
    assert cfg.ensemble == ("bilstm", "wide_char", "wide_word") and cfg.train.deterministic
    # wide_word: NB-SVM over hashed word 1-3-grams of the raw text, solved exactly.
    word = cfg.arch("wide_word")
    assert (word.tokens, word.ngram_max, word.ngram_weighting, word.solver) == ("word_ngrams", 3, "nb", "lbfgs")
    # The word CNN (an option, not in models) reads no n-gram branch: it errs unlike the others.
    assert cfg.arch("cnn").cell == "conv" and cfg.arch("cnn").ngram_buckets == 0 and cfg.trials_for("cnn") == 2
    # Tuning pays only at full fidelity: trials train on all rows for the architecture's epochs.
    assert cfg.tune.max_train_rows is None and cfg.tune.epochs_per_trial is None
    assert cfg.trials_for("bilstm") == 0 and cfg.trials_for("lstm") == 3 and cfg.trials_for("rnn") == 2
    # The char branch where it won on val; not in the lstm (benchmarks/README.md, 2026-12-04).
    assert [cfg.arch(a).char_ngram_dim for a in ("rnn_title", "rnn", "lstm", "bilstm")] == [16, 16, 0, 16]
    assert cfg.arch("wide").cell == "none" and cfg.arch("wide").ngram_weighting == "tfidf"
    assert cfg.arch("wide_char").tokens == "char_ngrams" and "wide_char" in cfg.ensemble
    assert cfg.vectorizer.max_tokens == 20000
    assert cfg.arch("rnn_title").units == 16 and cfg.arch("rnn_title").text == "title"
    assert cfg.data.max_train_rows is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train.epochs": -3}, "train.epochs: expected an integer >= 1, got -3"),
        ({"train.epochs": "five"}, "train.epochs: expected an integer, got 'five'"),
        ({"data.val_fraction": 1.5}, "data.val_fraction: expected a number between 0 and 1"),
        ({"models": ["rnn", "transformer"]}, "models[1]: unknown architecture 'transformer'"),
        ({"train.batching": "random"}, "train.batching: expected one of 'bucket', 'padded'"),
        ({"architectures.lstm.units": 2.5}, "architectures.lstm.units: expected an integer, got 2.5"),
        ({"architectures.lstm.mask_zero": "yes"}, "architectures.lstm.mask_zero: expected true/false"),
        ({"data.max_train_rows": 0}, "data.max_train_rows: expected null or an integer >= 8"),
        ({"architectures.gru.ngram_buckets": -1}, "architectures.gru.ngram_buckets: expected an integer >= 0"),
        ({"architectures.gru.pooling": "min"}, "architectures.gru.pooling: expected one of 'last', 'max', 'mean'"),
        ({"architectures.gru.embed_dropout": 1.0}, "architectures.gru.embed_dropout: expected a number in [0, 1)"),
        ({"train.lr_schedule": "step"}, "train.lr_schedule: expected one of 'constant', 'cosine'"),
        ({"train.weight_decay": -0.1}, "train.weight_decay: expected a number in [0, 1)"),
        ({"tune.min_val_gain": 1.5}, "tune.min_val_gain: expected a number >= 0 and < 1"),
        ({"models": ["lstm", "gru"], "ensemble": ["lstm", "bilstm"]}, "ensemble[1]: 'bilstm' is not in models"),
        ({"ensemble": ["lstm"]}, "ensemble: list at least two members"),
        ({"architectures.gru.epochs": 0}, "architectures.gru.epochs: expected null or an integer >= 1"),
        ({"architectures.gru.lr_schedule": "linear"}, "architectures.gru.lr_schedule: expected one of"),
        ({"ensemble": ["lstm", "lstm"]}, "ensemble: a member is listed twice"),
        ({"ensemble": ["lstm", "rnn_title"]}, "ensemble: members read different text fields"),
        ({"models": ["wide"], "architectures.wide.ngram_buckets": 0},
         "architectures.wide.ngram_buckets: cell none has no recurrent layer"),
        ({"models": ["wide"], "architectures.wide.pretrained_embeddings": True, "vectorizer.pretrain_dim": 16},
         "architectures.wide.pretrained_embeddings: cell none has no word embedding"),
        ({"architectures.wide.ngram_weighting": "bm25"},
         "architectures.wide.ngram_weighting: expected one of 'mean', 'tfidf', 'nb'"),
        ({"architectures.lstm.ngram_weighting": "nb"},
         "architectures.lstm.ngram_dim: ngram_weighting nb scales one dimension per class, so it needs ngram_dim 4"),
    ],
)
def test_bad_values_name_the_key(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(small_params(**override))
    assert message in str(err.value)


def test_unknown_keys_rejected_at_every_level() -> None:
    p = small_params()
    p["train"]["epoch"] = 3  # typo of epochs
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; allowed keys here: epochs"):
        config_from_dict(p)
    p = small_params()
    p["architectures"]["lstm"]["unit"] = 3
    with pytest.raises(ConfigError, match=r"architectures\.lstm\.unit: unknown key"):
        config_from_dict(p)
    p = small_params()
    p["extra"] = 1
    with pytest.raises(ConfigError, match=r"^extra: unknown key"):
        config_from_dict(p)


def test_missing_arch_section_and_file_errors(tmp_path: Path) -> None:
    p = small_params()
    del p["architectures"]["wide_char"]
    with pytest.raises(ConfigError, match=r"models\[4\]: 'wide_char' has no section under architectures"):
        config_from_dict(p)
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({**small_params(), "seed": -1}))
    with pytest.raises(ConfigError, match=r"params.yaml: seed: expected an integer >= 0"):
        load_config(bad)


def test_an_architecture_can_override_the_training_schedule() -> None:
    from newsrnn.config import resolve

    cfg = config_from_dict(small_params(**{"train.epochs": 3, "architectures.bilstm.epochs": 6,
                                           "architectures.bilstm.lr_schedule": "cosine",
                                           "architectures.bilstm.early_stopping_patience": 0}))
    own = resolve(cfg, "bilstm").train
    assert (own.epochs, own.lr_schedule, own.early_stopping_patience) == (6, "cosine", 0)
    assert own.batching == cfg.train.batching  # everything else still comes from train
    same = resolve(cfg, "gru").train
    assert same == cfg.train


def test_resolve_lays_tuned_values_then_overrides_over_params(tmp_path: Path) -> None:
    from newsrnn.config import resolve

    cfg = config_from_dict(small_params(**{"train.batch_size": 32, "architectures.gru.learning_rate": None}))
    tuned = tmp_path / "gru.yaml"
    tuned.write_text(yaml.safe_dump({"params": {"units": 12, "batch_size": 64, "learning_rate": 0.02}}))
    s = resolve(cfg, "gru", tuned)
    assert (s.arch.units, s.batch_size, s.learning_rate, s.tuned) == (12, 64, 0.02, True)
    s = resolve(cfg, "gru", tuned, overrides={"units": 5}, epochs=7)
    assert (s.arch.units, s.batch_size, s.train.epochs) == (5, 64, 7)
    untuned = resolve(cfg, "gru", tmp_path / "absent.yaml")
    assert (untuned.arch.units, untuned.batch_size, untuned.learning_rate, untuned.tuned) == (
        cfg.arch("gru").units, 32, cfg.train.learning_rate, False)


@pytest.mark.parametrize("text, match", [
    ("params: {pooling: max}\n", r"unknown tuned parameter\(s\) \['pooling'\]"),
    ("params: [1, 2]\n", "expected a mapping"),
    ("params: {units: 0}\n", "architectures.gru.units: expected an integer >= 1"),
    ("params: {units: [\n", "not valid YAML"),
])
def test_a_bad_tuned_file_names_the_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    from newsrnn.config import resolve

    tuned = tmp_path / "gru.yaml"
    tuned.write_text(text)
    with pytest.raises(ConfigError, match=match):
        resolve(config_from_dict(small_params()), "gru", tuned)
