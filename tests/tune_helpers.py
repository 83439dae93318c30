"""Objectives for tuning tests, importable by worker subprocesses."""

from __future__ import annotations

import math
import sys
import time
from typing import Any


def flaky(trial: Any) -> float:
    """Trial 0 raises, trial 1 returns NaN, later trials return a value."""
    x = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    if trial.number == 0:
        raise RuntimeError("boom in trial 0")
    if trial.number == 1:
        return math.nan
    return 0.5 + x


def slow(trial: Any) -> float:
    """Sleeps long enough for a test to kill the worker mid-trial."""
    trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    marker = trial.study.user_attrs.get("slow_seconds", 60)
    time.sleep(marker if trial.number == 0 else 0.1)
    return 0.7


def quick(trial: Any) -> float:
    """A fast objective for worker-count tests."""
    x = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    time.sleep(0.2)
    return x


if __name__ == "__main__":
    # python tune_helpers.py <storage_url> <study_name> <objective> <quota>
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from support import small_params

    from newsrnn.config import config_from_dict
    from newsrnn.tune import run_worker

    url, name, fn, quota = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = config_from_dict(small_params(**{"tune.n_trials": 4}))
    print("worker ran", run_worker(cfg, "gru", url, name, quota, objective=globals()[fn]), flush=True)
