"""Shared fixtures: synthetic corpora, prepared data, isolation from the caller's environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from support import REAL_DATA, small_params  # noqa: E402
from synthetic import write_corpus  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the caller's data dir, tracking server or Optuna storage."""
    for var in ("NEWSRNN_DATA_DIR", "MLFLOW_TRACKING_URI", "NEWSRNN_OPTUNA_STORAGE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A small synthetic ag_news_csv directory."""
    return write_corpus(tmp_path / "ag_news_csv")


@pytest.fixture
def real_data() -> Path:
    """The real corpus, or skip."""
    if not (REAL_DATA / "train.csv").exists():
        pytest.skip(f"real AG News not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def prepared(tmp_path: Path, corpus_dir: Path) -> dict[str, Path]:
    """fetch -> prepare -> vectorize on the synthetic corpus into tmp_path (library calls)."""
    from newsrnn.config import config_from_dict
    from newsrnn.fetch import fetch
    from newsrnn.prepare import prepare
    from newsrnn.vectorize import vectorize

    cfg = config_from_dict(small_params(**{"data.local_dir": str(corpus_dir)}))
    fetch(cfg.data, out_dir=tmp_path / "raw")
    prepare(cfg.data, cfg.seed, raw_dir=tmp_path / "raw", out_dir=tmp_path / "prepared")
    vectorize(cfg.vectorizer, tmp_path / "prepared", tmp_path / "vec")
    return {"raw": tmp_path / "raw", "prepared": tmp_path / "prepared", "vec": tmp_path / "vec",
            "root": tmp_path}


# Tests must leave nothing in the checkout (no mlruns/, mlflow.db, optuna/, artifacts/ ...): the
# untracked and ignored paths at the start of the session are compared with those at its end.
_SCRATCH = (".pytest_cache/", ".ruff_cache/", ".venv/", "__pycache__/", ".egg-info/")


def _checkout_litter() -> set[str]:
    import subprocess

    from support import ROOT

    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True)
    paths = {line[3:] for line in out.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(s in p for s in _SCRATCH)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_LITTER_KEY] = _checkout_litter()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_LITTER_KEY, None)
    if before is None:
        return
    left = sorted(_checkout_litter() - before)
    if left:
        print(f"\ntests left files in the checkout: {', '.join(left[:20])}", file=sys.stderr)
        session.exitstatus = 1


_LITTER_KEY = pytest.StashKey[set]()
