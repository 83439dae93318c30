"""Tuning and training build the same network and optimizer from the same values.

``train`` resolves an architecture with its tuned file; a tuning trial resolves it with the
trial's point as overrides. For the same point both must yield the same settings, and
``build_trainable`` the same layers and the same optimizer, schedule included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from support import small_params

from newsrnn.config import KNOWN_ARCHS, config_from_dict, resolve

VOCAB = 60


def _idf(settings: object) -> np.ndarray | None:
    from newsrnn.nn.networks import ngram_table_size

    arch = settings.arch  # type: ignore[attr-defined]
    if arch.ngram_buckets == 0 or arch.ngram_weighting == "mean":
        return None
    idf = np.linspace(0.0, 2.0, ngram_table_size(arch, VOCAB)).astype(np.float32)
    if arch.ngram_weighting == "nb":
        return np.stack([idf] + [np.linspace(-1.0, 1.0, len(idf), dtype=np.float32)] * 4, axis=1)
    return idf


def _optimizer_config(network: object) -> dict:
    cfg = dict(network.optimizer.get_config())  # type: ignore[attr-defined]
    cfg.pop("name", None)
    return cfg


@pytest.mark.parametrize("arch", KNOWN_ARCHS)
def test_tuning_and_training_build_the_same_trainable(arch: str, tmp_path: Path) -> None:
    import keras

    from newsrnn.nn.trainable import build_trainable
    from newsrnn.tune import suggest, trial_settings

    # A trial trains as many epochs as training does here, so the schedules can be compared.
    cfg = config_from_dict(small_params(**{"train.epochs": 2, "tune.epochs_per_trial": 2,
                                           "train.weight_decay": 0.001}))
    # The trial's point, as the sampler would propose it (a fixed trial stands in for TPE).
    import optuna

    study = optuna.create_study()
    point = {"batch_size": 16, "embed_dim": 16, "units": 8, "learning_rate": 0.003, "dropout": 0.2, "l2_c": 2.0}
    study.enqueue_trial(point)
    trial = study.ask()
    params = suggest(trial, cfg, arch)
    assert params.items() <= point.items()

    tuned_file = tmp_path / f"{arch}.yaml"
    tuned_file.write_text(yaml.safe_dump({"params": params}))
    in_training = resolve(cfg, arch, tuned_file)
    in_tuning = trial_settings(cfg, arch, params)
    assert in_training.arch == in_tuning.arch
    assert in_training.train == in_tuning.train
    assert (in_training.batch_size, in_training.learning_rate) == (in_tuning.batch_size, in_tuning.learning_rate)

    nets = []
    for settings in (in_training, in_tuning):
        keras.backend.clear_session()  # as tune does before each trial: fresh auto-names
        keras.utils.set_random_seed(0)
        vectors = np.ones((VOCAB, 16), np.float32) if settings.arch.pretrained_embeddings else None
        chars = settings.arch.char_ngram_dim > 0  # bilstm's char branch
        char_idf = np.ones(settings.arch.char_ngram_buckets + 1, np.float32) if chars else None
        nets.append(build_trainable(settings, VOCAB, steps_per_epoch=7, idf=_idf(settings), embeddings=vectors,
                                    char_idf=char_idf, word_length=32 if chars else None))
    a, b = nets
    assert a.get_config() == b.get_config()
    assert _optimizer_config(a) == _optimizer_config(b)
    assert [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]
    # The schedule is the architecture's own in both (wide and wide_char decay by cosine).
    expected = cfg.arch(arch).lr_schedule or cfg.train.lr_schedule
    lr = a.optimizer.get_config()["learning_rate"]
    if expected == "cosine":
        assert lr["class_name"] == "CosineDecay" and lr["config"]["decay_steps"] == 7 * 2
    else:
        assert lr == pytest.approx(in_training.learning_rate)
