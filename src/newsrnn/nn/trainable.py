"""The one builder of a compiled, trainable network, used by ``train``, every tuning trial and
the benchmark: same settings in, same network and optimizer (schedule included) out."""

from __future__ import annotations

import contextlib
from typing import Any

from newsrnn.config import Settings
from newsrnn.errors import ConfigError


def make_optimizer(settings: Settings, total_steps: int) -> Any:
    """Adam (AdamW with ``train.weight_decay``) at the settings' learning rate.

    ``lr_schedule: cosine`` decays the rate to 5% of it over ``total_steps`` (all epochs' steps).
    """
    import keras

    rate: Any = settings.learning_rate
    if settings.train.lr_schedule == "cosine":
        if total_steps < 1:
            raise ConfigError(f"architectures.{settings.name}: lr_schedule cosine needs at least one "
                              f"training step (got {total_steps}); add training rows or lower batch_size")
        rate = keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=total_steps, alpha=0.05)
    if settings.train.weight_decay > 0:
        return keras.optimizers.AdamW(rate, weight_decay=settings.train.weight_decay)
    return keras.optimizers.Adam(rate)


def build_trainable(settings: Settings, vocab_size: int, steps_per_epoch: int, embeddings: Any = None,
                    idf: Any = None, xla: bool = False, strategy: Any = None, char_idf: Any = None,
                    word_length: int | None = None) -> Any:
    """The network for ``settings``, compiled with its optimizer and sparse cross-entropy.

    Seeds Keras with ``settings.seed`` first. ``steps_per_epoch`` sizes the schedule
    (``settings.train.epochs`` epochs of it); ``strategy`` (a tf.distribute strategy on multi-GPU
    machines) owns the variables when given; XLA only where
    asked (a GPU). ``char_idf`` and ``word_length``: a char branch's (``build_network``).
    """
    import keras

    from newsrnn.nn.networks import build_network

    # The initial weights depend on the seed alone, not on what ran before in this process: a
    # tuning trial and `train` given the same settings start from the same weights.
    keras.utils.set_random_seed(settings.seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        network = build_network(settings.arch, vocab_size, name=f"{settings.name}_network",
                                embeddings=embeddings, idf=idf, char_idf=char_idf, word_length=word_length)
        network.compile(optimizer=make_optimizer(settings, steps_per_epoch * settings.train.epochs),
                        loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=xla)
    return network
