"""Every error type that means "the user can fix this", in one place.

The CLI prints any of these as one line (``newsrnn <command>: error: <message>``) and exits 2;
anything else is a bug and keeps its traceback. Each message names the file, line, key or value
that is wrong and what would be right. This module imports nothing heavy, so any layer can
raise these without pulling in TensorFlow or MLflow.
"""

from __future__ import annotations

import re


class NewsrnnError(Exception):
    """Base of every user-facing error."""


class ConfigError(NewsrnnError, ValueError):
    """A problem in params.yaml, naming the key path and what would be right."""


class UsageError(NewsrnnError, ValueError):
    """Wrong command-line usage (an argument, a path, a missing input)."""


class DataError(NewsrnnError, ValueError):
    """Bad input data, with file and line in the message."""


class FetchError(NewsrnnError, RuntimeError):
    """No source could deliver the corpus; the message lists each source's reason."""


class DvcDataError(FetchError):
    """A DVC repo, revision or tracked file could not be read; the message says which and why."""


class ArtifactError(NewsrnnError, ValueError):
    """A saved artifact is missing, truncated or altered."""


class TrainingDiverged(NewsrnnError, RuntimeError):
    """The loss became NaN or infinite; nothing is exported from such a run."""


class RegisterError(NewsrnnError, RuntimeError):
    """Missing metrics or an unreachable registry, with what to do about it."""


class PromotionRefused(RegisterError):
    """``register --strict``: the candidate failed the promotion gate (the message gives every reason)."""


class ServerConfigError(NewsrnnError, ValueError):
    """An unsafe or impossible server setting, with the option that would fix it."""


class KfpError(ConfigError):
    """A Kubeflow problem the user can fix: missing checkout, bad --arg, stale package, failed run."""


class ClusterConfigError(ConfigError):
    """A Kubeflow task was given a store it cannot use (local, unreachable); names the secret to fix."""


class OutputError(NewsrnnError, OSError):
    """An output could not be written (no space left, no quota); names the output."""


class BenchError(NewsrnnError, RuntimeError):
    """The benchmark could not run (no data, a child process failed)."""


# Exceptions from the standard library that a user's action causes: a path that does not exist,
# a directory where a file was expected, a full disk, no permission. The CLI reports them as one
# line too, with the path the OS names.
OS_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                              PermissionError, OSError)

_URL_PASSWORD = re.compile(r"(//[^:/@\s]+):[^@\s]*@")
# https://TOKEN@host: git hosts take a token as the user name.
_HTTP_TOKEN = re.compile(r"(https?://)[^:/@\s]+@")
_QUERY_SECRET = re.compile(r"([?&;](?:password|passwd|pwd|token|secret|key|access_key|secret_key|"
                           r"sig|signature|credential)[^=&;]*=)[^&;\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every credential in a URL masked: ``user:pass@`` and secret query values.

    The one redaction used for anything printed, logged or tagged (storage URLs, tracking URIs,
    DVC remotes, error messages).
    """
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    text = _HTTP_TOKEN.sub(r"\1***@", text)
    return _QUERY_SECRET.sub(r"\1***", text)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line, credentials redacted (OS errors keep their path)."""
    if isinstance(exc, OSError) and not isinstance(exc, NewsrnnError) and exc.filename is not None:
        msg = f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    elif isinstance(exc, FileNotFoundError) and not isinstance(exc, NewsrnnError):
        msg = f"{exc}: not found"
    else:
        msg = str(exc) or type(exc).__name__
    return redact(" ".join(msg.split()) if "\n" not in msg else " | ".join(
        line.strip() for line in msg.splitlines() if line.strip()))
