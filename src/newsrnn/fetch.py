"""Stage ``fetch``: get AG News from the first source that works.

Sources, tried in ``data.sources`` order (``NEWSRNN_DATA_DIR`` puts a local directory first):

- ``local``: a directory in the original ``ag_news_csv`` layout (``train.csv``, ``test.csv``);
- ``tfds``: tensorflow-datasets ``ag_news_subset``;
- ``url``: the original tarball from a mirror, verified against ``data.url_sha256`` before use and
  extracted without letting any member escape the target directory.

A failing source records why and the next one is tried; if all fail, one error lists every reason.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsrnn.config import DataConfig
from newsrnn.corpus import class_counts, read_agnews_csv
from newsrnn.errors import DataError, FetchError
from newsrnn.fileio import atomic_path, sha256_file, write_json, write_parquet

ENV_DATA_DIR = "NEWSRNN_DATA_DIR"


@dataclass
class FetchResult:
    """What fetch wrote and where the data came from."""

    source: str
    train_rows: int
    test_rows: int
    sha256: dict[str, str] = field(default_factory=dict)


class SourceUnavailable(Exception):
    """This source cannot be used here (missing, offline, unverified); try the next."""


def _read_csv_dir(directory: Path, cfg: DataConfig, out_dir: Path) -> tuple[Any, Any, dict[str, str]]:
    frames = []
    hashes = {}
    for split in ("train", "test"):
        path = directory / f"{split}.csv"
        if not path.is_file():
            raise SourceUnavailable(f"{path} does not exist")
        hashes[f"{split}.csv"] = sha256_file(path)
        frames.append(
            read_agnews_csv(
                path,
                max_reject_fraction=cfg.max_reject_fraction,
                max_reported=cfg.max_reported_errors,
                rejects_path=out_dir / f"rejects_{split}.jsonl",
            )
        )
    return frames[0], frames[1], hashes


def _from_local(directory: Path, cfg: DataConfig, out_dir: Path) -> tuple[Any, Any, dict[str, str]]:
    if not directory.is_dir():
        raise SourceUnavailable(f"directory {directory} does not exist")
    return _read_csv_dir(directory, cfg, out_dir)


def _from_tfds(cfg: DataConfig, out_dir: Path) -> tuple[Any, Any, dict[str, str]]:
    import pandas as pd

    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - it is a pinned dependency
        raise SourceUnavailable(f"tensorflow-datasets is not installed ({exc})") from None
    frames = []
    hashes = {}
    try:
        for split in ("train", "test"):
            ds = tfds.load("ag_news_subset", split=split, download=True)
            rows = []
            h = hashlib.sha256()
            for i, ex in enumerate(tfds.as_numpy(ds), start=1):
                title = ex["title"].decode("utf-8")
                desc = ex["description"].decode("utf-8")
                rows.append((i, int(ex["label"]), title, desc))
                h.update(f"{int(ex['label'])}\t{title}\t{desc}\n".encode())
            frames.append(pd.DataFrame(rows, columns=["line", "label", "title", "description"]))
            hashes[f"tfds:{split}"] = h.hexdigest()
    except Exception as exc:  # tfds raises many types when offline; the reason is what matters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceUnavailable(f"tensorflow-datasets could not load ag_news_subset: {first[:300]}") from None
    return frames[0], frames[1], hashes


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing members that are absolute, contain ``..`` or are links.

    Checks every member before extracting any, so a hostile archive writes nothing.
    """
    target = target.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            dest = (target / m.name).resolve()
            if os.path.isabs(m.name) or ".." in Path(m.name).parts or not dest.is_relative_to(target):
                raise DataError(f"{archive}: member {m.name!r} would escape {target}; refusing the archive")
            if not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: member {m.name!r} is a link or device; refusing the archive")
        tar.extractall(target, members=members, filter="data")


def _download(url: str, dest: Path) -> None:
    import requests
    from tqdm import tqdm

    with requests.get(url, stream=True, timeout=30) as resp:
        resp.raise_for_status()
        total = int(resp.headers.get("content-length", 0)) or None
        with atomic_path(dest) as tmp, open(tmp, "wb") as f, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"download {dest.name}"
        ) as bar:
            for chunk in resp.iter_content(1 << 16):
                f.write(chunk)
                bar.update(len(chunk))


def _from_url(cfg: DataConfig, out_dir: Path, cache_dir: Path) -> tuple[Any, Any, dict[str, str]]:
    if not cfg.url_sha256:
        raise SourceUnavailable(
            f"{cfg.url}: no data.url_sha256 is set, and an unverified download is never used; "
            "set data.url_sha256 to the tarball's sha256"
        )
    archive = cache_dir / Path(cfg.url.split("?")[0]).name
    if not archive.exists() or sha256_file(archive) != cfg.url_sha256:
        try:
            _download(cfg.url, archive)
        except Exception as exc:
            raise SourceUnavailable(f"{cfg.url}: download failed: {exc}") from None
    got = sha256_file(archive)
    if got != cfg.url_sha256:
        archive.unlink()
        raise SourceUnavailable(f"{cfg.url}: sha256 mismatch: expected {cfg.url_sha256}, got {got}")
    extract_dir = cache_dir / "extracted"
    safe_extract(archive, extract_dir)
    candidates = [p.parent for p in extract_dir.rglob("train.csv") if (p.parent / "test.csv").exists()]
    if not candidates:
        raise SourceUnavailable(f"{archive}: no directory with train.csv and test.csv inside")
    train, test, hashes = _read_csv_dir(candidates[0], cfg, out_dir)
    hashes[archive.name] = got
    return train, test, hashes


def source_order(cfg: DataConfig) -> list[tuple[str, Path | None]]:
    """The sources to try, as (kind, local dir) pairs, env var first."""
    order: list[tuple[str, Path | None]] = []
    env_dir = os.environ.get(ENV_DATA_DIR)
    if env_dir:
        order.append(("local", Path(env_dir)))
    for kind in cfg.sources:
        if kind == "local":
            if cfg.local_dir:
                order.append(("local", Path(cfg.local_dir)))
            elif not env_dir:
                order.append(("local", None))
        else:
            order.append((kind, None))
    return order


def fetch(cfg: DataConfig, out_dir: str | Path = "data/raw", cache_dir: str | Path = "data/download") -> FetchResult:
    """Fetch the corpus into ``out_dir/{train,test}.parquet`` and ``out_dir/source.json``."""
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir)
    reasons: list[str] = []
    for kind, directory in source_order(cfg):
        label = f"local:{directory}" if kind == "local" else kind
        try:
            if kind == "local":
                if directory is None:
                    raise SourceUnavailable(f"no directory given (set {ENV_DATA_DIR} or data.local_dir)")
                train, test, hashes = _from_local(directory, cfg, out_dir)
            elif kind == "tfds":
                train, test, hashes = _from_tfds(cfg, out_dir)
            else:
                train, test, hashes = _from_url(cfg, out_dir, cache_dir)
        except SourceUnavailable as exc:
            reasons.append(f"{label}: {exc}")
            print(f"fetch: source {label} unavailable: {exc}; trying the next")
            continue
        write_parquet(train, out_dir / "train.parquet")
        write_parquet(test, out_dir / "test.parquet")
        info = {
            "source": label,
            "sha256": hashes,
            "rows": {"train": len(train), "test": len(test)},
            "class_counts": {"train": class_counts(train["label"]), "test": class_counts(test["label"])},
            "skipped_sources": reasons,
        }
        write_json(out_dir / "source.json", info)
        print(f"fetch: {len(train)} train and {len(test)} test rows from {label}")
        return FetchResult(label, len(train), len(test), hashes)
    raise FetchError("no source could provide AG News:\n  " + "\n  ".join(reasons))


def data_sha256(raw_dir: str | Path = "data/raw") -> str:
    """One digest naming the fetched data version (from source.json)."""
    import json

    info = json.loads((Path(raw_dir) / "source.json").read_text())
    h = hashlib.sha256()
    for key in sorted(info["sha256"]):
        h.update(f"{key}={info['sha256'][key]}\n".encode())
    return h.hexdigest()
