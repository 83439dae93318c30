"""Progress bars: drawn on a terminal (or when forced), silent in logs."""

from __future__ import annotations

import io

import pytest

from newsrnn.progress import TrialBar, enabled, epoch_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_unless_a_terminal_or_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSRNN_PROGRESS", raising=False)
    assert not enabled(io.StringIO()) and enabled(_Tty())
    assert epoch_bar("gru", 0, 3, 10, stream=io.StringIO()) == []
    monkeypatch.setenv("NEWSRNN_PROGRESS", "0")
    assert not enabled(_Tty())
    monkeypatch.setenv("NEWSRNN_PROGRESS", "1")
    assert enabled(io.StringIO())


def test_epoch_bar_counts_the_batches_of_a_real_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras
    import numpy as np

    monkeypatch.delenv("NEWSRNN_PROGRESS", raising=False)
    out = _Tty()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 4
    callbacks = epoch_bar("wide", 1, 3, 5, stream=out)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=callbacks)
    bar = callbacks[0].bar
    assert (bar.n, bar.total) == (5, 5) and "loss" in bar.postfix
    assert "wide epoch 2/3" in out.getvalue()


def test_trial_bar_follows_a_real_study(monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    monkeypatch.delenv("NEWSRNN_PROGRESS", raising=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = _Tty()
    study = optuna.create_study(direction="maximize")
    bar = TrialBar("gru", 3, stream=out)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3, callbacks=[bar])
    assert (bar.bar.n, bar.bar.total) == (3, 3) and f"best={study.best_value:.4f}" in bar.bar.postfix
    assert "tune gru" in out.getvalue()
    quiet = io.StringIO()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1, callbacks=[TrialBar("gru", 1, stream=quiet)])
    assert quiet.getvalue() == ""
