"""Progress bars a person can watch: one per training epoch (batches), one per tuning study (trials).

Shown only on a terminal: under ``dvc repro`` in CI, in Kubeflow pods or with output piped to a
file, a bar is carriage-return noise in the log, so both are silent there (the per-epoch summary
line that training prints stays). ``NEWSRNN_PROGRESS=1`` forces them on, ``=0`` off.

Hooks (one line each where the loops are):

- an epoch: ``callbacks=[..., *epoch_bar(label, epoch, epochs, steps)]`` in the ``network.fit``
  call of the epoch loop (it runs one epoch per ``fit``);
- a study: ``callbacks=[TrialBar(arch, quota)]`` in ``study.optimize``.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

ENV = "NEWSRNN_PROGRESS"


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether bars are shown on ``stream`` (default stderr): a terminal, unless NEWSRNN_PROGRESS says."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def epoch_bar(label: str, epoch: int, epochs: int, steps: int, stream: IO[str] | None = None) -> list[Any]:
    """Keras callbacks drawing one bar over the batches of epoch ``epoch`` (0-based); [] when quiet."""
    if not enabled(stream):
        return []
    import keras
    from tqdm.auto import tqdm

    class EpochBar(keras.callbacks.Callback):
        """Batches done, loss and accuracy so far, for one ``fit`` of one epoch."""

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.bar = tqdm(total=steps or None, desc=f"{label} epoch {epoch + 1}/{epochs}", unit="batch",
                            file=stream if stream is not None else sys.stderr, leave=False, dynamic_ncols=True)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.bar.update(1)
            if logs and batch % 10 == 0:
                self.bar.set_postfix({k: f"{float(v):.4f}" for k, v in logs.items() if k in ("loss", "accuracy")},
                                     refresh=False)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self.bar.close()

    return [EpochBar()]


class TrialBar:
    """Optuna callback: one bar over a worker's trials, with the study's best value so far."""

    def __init__(self, label: str, n_trials: int, stream: IO[str] | None = None) -> None:
        self.bar: Any = None
        if n_trials > 0 and enabled(stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_trials, desc=f"tune {label}", unit="trial", dynamic_ncols=True,
                            file=stream if stream is not None else sys.stderr)

    def __call__(self, study: Any, trial: Any) -> None:
        """Called by ``study.optimize`` after each trial (complete, pruned or failed)."""
        if self.bar is None:
            return
        self.bar.update(1)
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:  # no completed trial yet
            best = "-"
        self.bar.set_postfix({"last": trial.state.name.lower(), "best": best})
        if self.bar.n >= self.bar.total:
            self.bar.close()
