"""The error types that mean "the user's input is wrong" (printed as one line, no traceback)."""

from __future__ import annotations


def USER_ERRORS() -> tuple[type[BaseException], ...]:  # noqa: N802 - reads as a constant at call sites
    """Expected, user-actionable errors from every stage (imported lazily: all are light)."""
    from newsrnn.config import ConfigError
    from newsrnn.corpus import DataError
    from newsrnn.fetch import FetchError
    from newsrnn.train import TrainingDiverged
    from newsrnn.vectorize import ArtifactError

    extra: list[type[BaseException]] = []
    from newsrnn.dvcdata import DvcDataError
    from newsrnn.kfp_cli import KfpError
    from newsrnn.register import RegisterError
    from newsrnn.server import ServerConfigError

    extra.extend([RegisterError, ServerConfigError, KfpError, DvcDataError])
    return (ConfigError, DataError, FetchError, ArtifactError, TrainingDiverged, FileNotFoundError, *extra)
