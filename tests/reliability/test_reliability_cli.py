"""Reliability, the CLI's entry points: whatever a user hands a command (a params file, bytes on
stdin or in a file, a path, an argument, a data file, a full disk), it ends in one line naming what
is wrong and where, exit status 2, and the outputs already written stay as they were.

The commands run in-process through ``newsrnn.cli.main`` (what the console script calls), so the
classes of input stay cheap to cover; ``test_cli.py`` runs the real console script.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import small_params
from synthetic import write_corpus

from newsrnn.cli import main


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> str:
    """Run ``newsrnn argv``; assert exit 2 and a single stderr line holding every ``expected``."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"newsrnn {argv[0]}: error: "), err
    for part in expected:
        assert part in err, err
    return err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory with the test params, as the working directory."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("content", "expected"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "not a text file (byte"),
    (b"train: [1, 2\n", "not valid YAML"),
    (b"- just\n- a list\n", "expected a mapping"),
    (b"train:\n  epochs: many\n", "train.epochs: expected an integer"),
    (b"architectures:\n  lstm:\n    units: -4\n", "architectures.lstm.units: expected an integer >= 1, got -4"),
])
def test_a_bad_params_file_is_one_line_naming_it(project: Path, capsys: pytest.CaptureFixture[str],
                                                 content: bytes, expected: str) -> None:
    bad = project / "bad.yaml"
    bad.write_bytes(content)
    one_line_error(capsys, ["prepare", "--params", str(bad)], "bad.yaml", expected)


def test_a_params_path_that_is_a_directory_or_missing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "adir").mkdir()
    one_line_error(capsys, ["fetch", "--params", "adir"], "adir", "directory")
    one_line_error(capsys, ["fetch", "--params", "nowhere.yaml"], "nowhere.yaml", "not found")


def test_bytes_that_are_not_text_on_stdin_or_in_a_file(project: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine headline\nbad \xff\xfe bytes\n")))
    one_line_error(capsys, ["predict", "--model", "nowhere"], "stdin: line 2: not valid UTF-8")
    (project / "texts.txt").write_bytes(b"\x00\x9f\x92\x96")
    one_line_error(capsys, ["predict", "--file", "texts.txt", "--model", "nowhere"],
                   "texts.txt: line 1: not valid UTF-8")


def test_bad_arguments_name_the_argument(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, ["tune", "lstm", "--workers", "0"], "--workers: expected an integer >= 1, got 0")
    one_line_error(capsys, ["train", "lsmt"], "architectures.lsmt: no section", "known:")
    one_line_error(capsys, ["evaluate", "gru"], "artifacts/models/gru: no trained model",
                   "run `newsrnn train gru` first")
    one_line_error(capsys, ["vectorize"], "data/prepared/train.parquet: not found", "run `newsrnn prepare` first")


def test_a_damaged_data_file_names_the_file_and_the_stage(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepared = project / "data" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "train.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    one_line_error(capsys, ["vectorize"], "train.parquet: not a readable parquet file", "re-run `newsrnn prepare`")
    assert not (project / "artifacts" / "vectorizer").exists()


def test_data_that_cannot_train_four_topics_is_refused_before_anything_is_written(
        project: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_corpus(tmp_path_factory.mktemp("good"), n_train=200, n_test=40)
    monkeypatch.setenv("NEWSRNN_DATA_DIR", str(good))
    assert main(["fetch"]) == 0 and main(["prepare"]) == 0
    before = {p.name: p.read_bytes() for p in (project / "data" / "prepared").iterdir()}
    # The same rows with every Sports and Business headline gone: 2 of 4 topics cannot be learnt.
    lines = (good / "train.csv").read_text().splitlines(keepends=True)
    only_two = tmp_path_factory.mktemp("two")
    (only_two / "train.csv").write_text("".join(x for x in lines if x.startswith(('"1"', '"4"'))))
    shutil.copy(good / "test.csv", only_two / "test.csv")
    monkeypatch.setenv("NEWSRNN_DATA_DIR", str(only_two))
    assert main(["fetch"]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["prepare"], "train.csv: the train split has no rows of class 2 (Sports), 3 (Business)")
    assert {p.name: p.read_bytes() for p in (project / "data" / "prepared").iterdir()} == before


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Path:
    """A 2 MiB tmpfs (a real filesystem that fills up), or skip where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_earlier_outputs(
        tiny_disk: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tiny_disk / "params.yaml").write_text(yaml.safe_dump(small_params()))
    monkeypatch.chdir(tiny_disk)
    small = write_corpus(tmp_path_factory.mktemp("small"), n_train=200, n_test=40)
    monkeypatch.setenv("NEWSRNN_DATA_DIR", str(small))
    assert main(["fetch"]) == 0
    before = (tiny_disk / "data" / "raw" / "train.parquet").read_bytes()
    # Fill the disk up to a few KiB, then fetch a corpus far larger than that.
    free = shutil.disk_usage(tiny_disk).free
    (tiny_disk / "ballast").write_bytes(b"\0" * max(0, free - 16 * 1024))
    big = write_corpus(tmp_path_factory.mktemp("big"), n_train=4000, n_test=400)
    monkeypatch.setenv("NEWSRNN_DATA_DIR", str(big))
    capsys.readouterr()
    one_line_error(capsys, ["fetch"], "data/raw", "No space left on device", "unchanged")
    assert (tiny_disk / "data" / "raw" / "train.parquet").read_bytes() == before
    assert not [p for p in (tiny_disk / "data" / "raw").iterdir() if p.name.startswith(".")]
