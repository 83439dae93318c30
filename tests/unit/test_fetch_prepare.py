"""fetch sources in order with reasons, safe downloads; prepare's split and leakage check."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from support import small_params
from synthetic import write_corpus

from newsrnn.config import config_from_dict
from newsrnn.errors import DataError, FetchError
from newsrnn.fetch import ENV_DATA_DIR, fetch, safe_extract
from newsrnn.prepare import prepare


def _cfg(**overrides: object):  # noqa: ANN202
    return config_from_dict(small_params(**overrides))


def test_local_source_writes_parquet_and_source_json(corpus_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(corpus_dir))
    res = fetch(_cfg().data, out_dir=tmp_path / "raw")
    assert res.train_rows == 400 and res.test_rows == 120
    info = json.loads((tmp_path / "raw" / "source.json").read_text())
    assert info["source"] == f"local:{corpus_dir}"
    assert info["sha256"]["train.csv"] == hashlib.sha256((corpus_dir / "train.csv").read_bytes()).hexdigest()
    assert info["class_counts"]["train"] == {"World": 100, "Sports": 100, "Business": 100, "Sci/Tech": 100}
    df = pd.read_parquet(tmp_path / "raw" / "train.parquet")
    assert set(df.columns) == {"line", "label", "title", "description"}


def test_all_sources_failing_lists_every_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    cfg = _cfg(**{"data.sources": ["local", "url"], "data.local_dir": str(tmp_path / "missing")})
    with pytest.raises(FetchError) as err:
        fetch(cfg.data, out_dir=tmp_path / "raw", cache_dir=tmp_path / "dl")
    msg = str(err.value)
    assert f"local:{tmp_path / 'missing'}: directory {tmp_path / 'missing'} does not exist" in msg
    assert "url: " in msg and "no data.url_sha256 is set" in msg
    assert not (tmp_path / "raw").exists()


def test_bad_rows_fail_fetch_and_keep_previous_outputs(corpus_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(corpus_dir))
    fetch(_cfg().data, out_dir=tmp_path / "raw")
    before = (tmp_path / "raw" / "train.parquet").read_bytes()
    with open(corpus_dir / "train.csv", "a") as f:
        f.write('"5","bad label","x"\n')
    with pytest.raises(DataError, match=r"train.csv:401: class must be 1-4, got '5'"):
        fetch(_cfg().data, out_dir=tmp_path / "raw")
    assert (tmp_path / "raw" / "train.parquet").read_bytes() == before


def _tarball(corpus_dir: Path, extra: tarfile.TarInfo | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("train.csv", "test.csv"):
            tar.add(corpus_dir / name, arcname=f"ag_news_csv/{name}")
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return buf.getvalue()


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_source_verified_by_sha256(corpus_dir: Path, tmp_path: Path, http_dir: tuple[Path, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    root, base = http_dir
    blob = _tarball(corpus_dir)
    (root / "ag_news_csv.tgz").write_bytes(blob)
    good = hashlib.sha256(blob).hexdigest()
    over = {"data.sources": ["url"], "data.url": f"{base}/ag_news_csv.tgz"}
    res = fetch(_cfg(**over, **{"data.url_sha256": good}).data, out_dir=tmp_path / "raw",
                cache_dir=tmp_path / "dl")
    assert res.source == "url" and res.train_rows == 400
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(_cfg(**over, **{"data.url_sha256": "0" * 64}).data, out_dir=tmp_path / "raw2",
              cache_dir=tmp_path / "dl2")
    assert not (tmp_path / "raw2").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/newsrnn-evil-abs.txt", "ag_news_csv/../../evil.txt"])
def test_safe_extract_refuses_escaping_members(corpus_dir: Path, tmp_path: Path, member: str) -> None:
    info = tarfile.TarInfo(member)
    info.size = 3
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(_tarball(corpus_dir, info))
    with pytest.raises(DataError, match="would escape"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/newsrnn-evil-abs.txt").exists()
    assert not (tmp_path / "out" / "ag_news_csv" / "train.csv").exists()  # nothing extracted at all


def test_prepare_split_is_stratified_seeded_and_leak_free(tmp_path: Path) -> None:
    d = write_corpus(tmp_path / "c", n_train=400, n_test=40)
    # Put one test row into train (with different case/escapes): it must be dropped.
    test_row = (d / "test.csv").read_text().splitlines()[0]
    with open(d / "train.csv", "a") as f:
        f.write(test_row.upper().replace('"', '"', 1) + "\n")
    cfg = _cfg()
    fetch(config_from_dict(small_params(**{"data.local_dir": str(d)})).data, out_dir=tmp_path / "raw")
    res = prepare(cfg.data, cfg.seed, raw_dir=tmp_path / "raw", out_dir=tmp_path / "p1")
    assert res.leaked_dropped == 1
    assert (res.train_rows, res.val_rows, res.test_rows) == (360, 40, 40)
    val = pd.read_parquet(tmp_path / "p1" / "val.parquet")
    assert val["label"].value_counts().to_dict() == {0: 10, 1: 10, 2: 10, 3: 10}
    prepare(cfg.data, cfg.seed, raw_dir=tmp_path / "raw", out_dir=tmp_path / "p2")
    for name in ("train", "val", "test"):
        a = pd.read_parquet(tmp_path / "p1" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "p2" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert "\\" not in "".join(pd.read_parquet(tmp_path / "p1" / "train.parquet")["description"])

    strict = _cfg(**{"data.leakage": "error"})
    with pytest.raises(DataError, match=r"train.csv: 1 row\(s\) also appear in test.csv \(lines 401\)"):
        prepare(strict.data, strict.seed, raw_dir=tmp_path / "raw", out_dir=tmp_path / "p1")
    assert len(pd.read_parquet(tmp_path / "p1" / "train.parquet")) == 360  # earlier output intact

    capped = _cfg(**{"data.max_train_rows": 100})
    res = prepare(capped.data, capped.seed, raw_dir=tmp_path / "raw", out_dir=tmp_path / "p3")
    assert res.train_rows + res.val_rows == 100
