"""The one setting every component's ``base_image`` comes from.

``params.yaml`` (``kfp.base_image``) is the source; ``newsrnn kfp compile --params other.yaml``
passes another file's value through ``NEWSRNN_KFP_BASE_IMAGE`` before the components are
imported. Pin it by digest (``...@sha256:...``) for clusters where tags can move.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_BASE_IMAGE = "NEWSRNN_KFP_BASE_IMAGE"
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def base_image() -> str:
    """The image every task runs in: the env override, else params.yaml's ``kfp.base_image``."""
    if os.environ.get(ENV_BASE_IMAGE):
        return os.environ[ENV_BASE_IMAGE]
    from newsrnn.config import load_config

    return load_config(PARAMS).kfp.base_image


BASE_IMAGE = base_image()

ENV_PARALLELISM = "NEWSRNN_KFP_PARALLELISM"


def parallelism() -> tuple[int, int]:
    """(architectures, tuning workers per architecture) run at once: ``kfp.arch_parallelism``,
    ``kfp.tune_parallelism``. Fixed at compile time: the backend takes a number, not a parameter."""
    if os.environ.get(ENV_PARALLELISM):
        archs, workers = os.environ[ENV_PARALLELISM].split(",")
        return int(archs), int(workers)
    from newsrnn.config import load_config

    kfp = load_config(PARAMS).kfp
    return kfp.arch_parallelism, kfp.tune_parallelism
