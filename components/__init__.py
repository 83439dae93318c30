"""Kubeflow components: one thin typed wrapper per stage, each calling one ``newsrnn`` function.

Every component runs in ``BASE_IMAGE`` (built from the repo's Dockerfile, with ``newsrnn`` and
its pinned dependencies, kfp included), so nothing is pip-installed when a task starts.
"""

from components.config import architectures, stage_configs
from components.ensemble import ensemble
from components.evaluate import evaluate
from components.fetch import fetch
from components.image import BASE_IMAGE
from components.prepare import prepare
from components.register import register
from components.tracking import tracking_setup
from components.train import train
from components.tune import tune, tune_finalize, tune_plan
from components.vectorize import vectorize

__all__ = ["BASE_IMAGE", "architectures", "ensemble", "evaluate", "fetch", "prepare", "register", "stage_configs",
           "tracking_setup", "train", "tune", "tune_finalize", "tune_plan", "vectorize"]
