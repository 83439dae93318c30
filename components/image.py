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
