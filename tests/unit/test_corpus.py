"""CSV validation and cleaning: every bad row named with file, line and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsrnn.corpus import clean_text, read_agnews_csv
from newsrnn.errors import DataError

GOOD = '"3","Oil up","Prices rise\\again"\n"1","Talks","Peace it#39;s on"\n'


def _write(tmp_path: Path, content: bytes | str) -> Path:
    p = tmp_path / "train.csv"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def test_reads_good_rows(tmp_path: Path) -> None:
    df = read_agnews_csv(_write(tmp_path, GOOD))
    assert list(df["label"]) == [2, 0]
    assert list(df["line"]) == [1, 2]


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('"3","only two"', "expected 3 fields (class,title,description), got 2"),
        ('"5","t","d"', "class must be 1-4, got '5'"),
        ('"0","t","d"', "class must be 1-4, got '0'"),
        ('"Sports","t","d"', "class must be 1-4, got 'Sports'"),
        ('"2","  ","   "', "empty text"),
        ('"2","a","b","c"', "expected 3 fields"),
        ('"2","bad "quote","d"', "malformed CSV"),
    ],
)
def test_each_bad_row_is_named(tmp_path: Path, bad_line: str, problem: str) -> None:
    p = _write(tmp_path, GOOD + bad_line + "\n" + GOOD)
    with pytest.raises(DataError) as err:
        read_agnews_csv(p)
    assert f"train.csv:3: {problem}" in str(err.value)


def test_non_utf8_reports_line(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.encode() + b'"1","caf\xe9","d"\n')
    with pytest.raises(DataError, match=r"train.csv:3: not valid UTF-8"):
        read_agnews_csv(p)


def test_reports_all_bad_rows_up_to_limit(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD + "".join(f'"9","t{i}","d"\n' for i in range(30)))
    with pytest.raises(DataError) as err:
        read_agnews_csv(p, max_reported=5)
    msg = str(err.value)
    assert "30 bad row(s) of 32" in msg
    assert "train.csv:3:" in msg and "train.csv:7:" in msg and "train.csv:8:" not in msg
    assert "and 25 more" in msg


def test_reject_fraction_diverts_rows(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD * 10 + '"7","t","d"\n')
    rejects = tmp_path / "rejects.jsonl"
    df = read_agnews_csv(p, max_reject_fraction=0.1, rejects_path=rejects)
    assert len(df) == 20
    assert '"line": 21' in rejects.read_text()


def test_clean_text_undoes_corpus_quirks() -> None:
    assert clean_text("Reuters - Short-sellers\\band of it#39;s &lt;b&gt;") == "Reuters - Short-sellers band of it's"
    assert clean_text("AT&amp;T quot;newquot; <b>bold</b>") == 'AT&T "new" bold'
