"""TensorFlow runtime setup: logging, seeds, determinism, GPUs and distribution strategy."""

from __future__ import annotations

import os
from typing import Any


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (must run before the first TF import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def setup_runtime(seed: int, deterministic: bool = False, mixed_precision: bool = False) -> Any:
    """Seed everything, enable memory growth on every GPU and pick a distribution strategy.

    Returns a ``tf.distribute`` strategy: MirroredStrategy with several GPUs, the default
    strategy otherwise. Mixed precision is only enabled when a GPU is present, because on the
    CPU float16 matmuls are slower, not faster.
    """
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this process; growth was set the first time
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
