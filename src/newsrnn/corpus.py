"""Reading and validating AG News files in the original ``ag_news_csv`` layout.

Each row is ``"class","title","description"`` with class 1-4. Validation is strict and reports
every bad row (up to a limit) with its file and line, so a user fixes the input once, not row by
row. Rows can instead be diverted to a rejects file when ``data.max_reject_fraction`` allows it.
"""

from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsrnn.config import CLASS_NAMES
from newsrnn.errors import DataError


@dataclass(frozen=True)
class BadRow:
    """One rejected row: where it is and what is wrong."""

    file: str
    line: int
    problem: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}"


_ENTITY = re.compile(r"&?#(\d{1,6});|&?(quot|amp|lt|gt|apos|nbsp);")
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'", "nbsp": " "}
_TAG = re.compile(r"<[^>]{0,200}>")
_SPACE = re.compile(r"\s+")


def _entity(m: re.Match[str]) -> str:
    if m.group(1):
        code = int(m.group(1))
        return chr(code) if 0 < code < 0x110000 else " "
    return _NAMED[m.group(2)]


def clean_text(text: str) -> str:
    """Undo the corpus's encoding quirks: ``\\`` line breaks, ``#39;``-style entities, tags."""
    text = text.replace("\\", " ")
    text = _ENTITY.sub(_entity, text)
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def read_agnews_csv(
    path: str | Path,
    *,
    max_reject_fraction: float = 0.0,
    max_reported: int = 20,
    rejects_path: str | Path | None = None,
) -> Any:
    """Parse and validate one AG News CSV file into a DataFrame.

    Columns: ``line`` (1-based line of the record's start), ``label`` (0-3), ``title``,
    ``description`` (raw text, uncleaned). Raises DataError listing bad rows when there are any
    and the reject fraction is exceeded; otherwise bad rows are written to ``rejects_path``.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    name = path.name
    bad: list[BadRow] = []
    rows: list[tuple[int, int, str, str]] = []

    # AG News records never span lines (the corpus encodes line breaks as "\\"), so each
    # physical line is parsed on its own: one broken line (bad bytes, a stray quote) costs
    # exactly that row and can never swallow the next one.
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append(BadRow(name, lineno, f"not valid UTF-8 (byte {exc.start})", repr(raw[:80])))
            continue
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            bad.append(BadRow(name, lineno, f"malformed CSV ({exc})", line[:120]))
            continue
        if len(fields) != 3:
            bad.append(BadRow(name, lineno, f"expected 3 fields (class,title,description), got {len(fields)}",
                              line[:120]))
            continue
        klass, title, desc = fields
        if klass.strip() not in ("1", "2", "3", "4"):
            bad.append(BadRow(name, lineno, f"class must be 1-4, got {klass!r}", line[:120]))
            continue
        if not title.strip() and not desc.strip():
            bad.append(BadRow(name, lineno, "empty text: title and description are both blank", line[:120]))
            continue
        rows.append((lineno, int(klass) - 1, title, desc))

    total = len(rows) + len(bad)
    if bad:
        fraction = len(bad) / max(total, 1)
        if fraction > max_reject_fraction:
            shown = "\n  ".join(str(b) for b in bad[:max_reported])
            more = f"\n  ... and {len(bad) - max_reported} more" if len(bad) > max_reported else ""
            raise DataError(
                f"{path}: {len(bad)} bad row(s) of {total} "
                f"(allowed reject fraction {max_reject_fraction}):\n  {shown}{more}"
            )
        if rejects_path is not None:
            from newsrnn.fileio import write_text

            write_text(
                rejects_path,
                "".join(json.dumps(b.__dict__) + "\n" for b in bad),
            )
    if not rows:
        raise DataError(f"{path}: no valid rows")
    return pd.DataFrame(rows, columns=["line", "label", "title", "description"])


def class_counts(labels: Any) -> dict[str, int]:
    """Rows per class name."""
    return {CLASS_NAMES[i]: int((labels == i).sum()) for i in range(len(CLASS_NAMES))}
