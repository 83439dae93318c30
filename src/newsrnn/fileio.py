"""Atomic file writes and content hashes.

A stage either leaves complete outputs or none: everything is written beside its target under a
temporary name and moved into place with ``os.replace``, which is atomic on POSIX filesystems.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# A write that fails for want of space (or of quota, or of the file-size limit).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def _no_space_names(target: Path) -> Iterator[None]:
    """Turn "no space left" while writing ``target`` into an OutputError that names it."""
    from newsrnn.errors import OutputError

    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_SPACE or isinstance(exc, OutputError):
            raise
        raise OutputError(f"{target}: could not be written: {os.strerror(exc.errno)}; free space on "
                          f"that filesystem and re-run (what was there before is unchanged)") from None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it over ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _no_space_names(target):
            yield tmp_path
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    The old directory is moved aside first and deleted only after the new one is in place,
    so a crash leaves either the old or the new complete directory at ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with _no_space_names(target):
            yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "d")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write pretty JSON."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write YAML."""
    import yaml

    write_text(target, yaml.safe_dump(obj, sort_keys=True))


def write_parquet(df: Any, target: str | os.PathLike[str]) -> None:
    """Atomically write a pandas DataFrame as parquet."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)


def read_parquet(path: str | os.PathLike[str], made_by: str) -> Any:
    """Read a stage's parquet output; a missing or unreadable file names the stage to re-run."""
    import pandas as pd

    from newsrnn.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: not found; run `newsrnn {made_by}` first")
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # pyarrow reports a damaged file under several types
        raise DataError(f"{p}: not a readable parquet file ({type(exc).__name__}); "
                        f"re-run `newsrnn {made_by}`") from None


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A candidate's metrics file with its run record (``record``, relative to the metrics file)
    merged in, when it has one."""
    m = json.loads(Path(path).read_text())
    record = Path(path).parent / m["record"] if m.get("record") else None
    if record is not None and record.is_file():
        m = {**json.loads(record.read_text()), **m}
    return m
