"""``presets/notebook.yaml`` reproduces the teaching notebook's recipe: its four networks with the
notebook's parameter counts, its vocabulary, batches and single epoch."""

from __future__ import annotations

import numpy as np
import pytest
from support import ROOT

from newsrnn.config import load_config, resolve

PRESET = ROOT / "presets" / "notebook.yaml"
# Embedding(20000, d) + the recurrent layers + Dense(4), as the notebook's model.summary() counts them.
NOTEBOOK_PARAMETERS = {"rnn_title": 1_281_364, "rnn": 1_281_364, "lstm": 1_282_372, "bilstm": 2_758_148}
NOTEBOOK_BATCH = {"rnn_title": 16, "rnn": 16, "lstm": 8, "bilstm": 16}


@pytest.mark.parametrize("arch", list(NOTEBOOK_PARAMETERS))
def test_notebook_preset_builds_the_notebooks_networks(arch: str) -> None:
    from newsrnn.nn.trainable import build_trainable

    cfg = load_config(PRESET)
    settings = resolve(cfg, arch)
    net = build_trainable(settings, cfg.vectorizer.max_tokens, steps_per_epoch=1)
    assert net.count_params() == NOTEBOOK_PARAMETERS[arch]
    assert settings.batch_size == NOTEBOOK_BATCH[arch] and settings.learning_rate == 0.001
    out = net(np.array([[5, 6, 7, 0], [8, 1, 0, 0]]))
    np.testing.assert_allclose(out.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_notebook_preset_trains_the_notebooks_way() -> None:
    cfg = load_config(PRESET)
    assert cfg.models == tuple(NOTEBOOK_PARAMETERS) and cfg.ensemble == () and cfg.tune.n_trials == 0
    v = cfg.vectorizer
    assert (v.max_tokens, v.max_length, v.adapt_fields, v.adapt_rows) == (20000, None, ("title",), 2000)
    t = cfg.train
    assert (t.epochs, t.batching, t.shuffle, t.lr_schedule) == (1, "padded", False, "constant")
    assert [cfg.arch(a).mask_zero for a in cfg.models] == [False, True, False, True]
    assert cfg.arch("rnn_title").text == "title" and cfg.arch("bilstm").bidirectional
