"""Stage ``prepare``: clean the text, cap and split the training rows, check for leakage.

Writes ``data/prepared/{train,val,test}.parquet`` with columns ``label``, ``title``,
``description`` (cleaned) and ``line`` (line in the original CSV, for tracing a row back).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsrnn.config import CLASS_NAMES, DataConfig
from newsrnn.errors import DataError
from newsrnn.fileio import atomic_dir, read_parquet, write_json, write_parquet


@dataclass
class PrepareResult:
    """Row counts of the prepared splits and how many leaked rows were dropped."""

    train_rows: int
    val_rows: int
    test_rows: int
    leaked_dropped: int


def _clean(df: Any, name: str) -> Any:
    from newsrnn.corpus import clean_text

    expected = {"line", "label", "title", "description"}
    missing = expected - set(df.columns)
    if missing:
        raise DataError(f"{name}: missing column(s) {sorted(missing)}; re-run fetch")
    bad_labels = df[~df["label"].isin([0, 1, 2, 3])]
    if len(bad_labels):
        row = bad_labels.iloc[0]
        raise DataError(f"{name}: line {row['line']}: label must be 0-3, got {row['label']!r}")
    out = df.copy()
    out["title"] = out["title"].map(clean_text)
    out["description"] = out["description"].map(clean_text)
    empty = out[(out["title"] == "") & (out["description"] == "")]
    if len(empty):
        lines = ", ".join(str(x) for x in empty["line"].head(20))
        raise DataError(f"{name}: {len(empty)} row(s) have no text left after cleaning (lines {lines})")
    return out


def stratified_split(labels: Any, val_fraction: float, seed: int) -> tuple[Any, Any]:
    """Seeded per-class split: index arrays (train, val) with each class at ``val_fraction``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train_idx, val_idx = [], []
    for klass in np.unique(labels):
        idx = np.flatnonzero(labels == klass)
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def check_trainable(splits: dict[str, Any], cfg: DataConfig) -> None:
    """Refuse data that cannot train and score a 4-topic classifier, before anything is written:
    every class must have rows in train, val and test (val picks the champion, test reports it)."""
    for name, df in splits.items():
        counts = df["label"].value_counts()
        missing = [f"{c + 1} ({CLASS_NAMES[c]})" for c in range(len(CLASS_NAMES)) if counts.get(c, 0) == 0]
        if missing:
            hint = (f"add rows of those classes, or raise data.val_fraction (now {cfg.val_fraction})"
                    if name == "val" else "add rows of those classes")
            where = "test.csv" if name == "test" else "train.csv"
            raise DataError(f"{where}: the {name} split has no rows of class {', '.join(missing)} after "
                            f"cleaning and splitting ({len(df)} rows); a 4-topic classifier cannot be "
                            f"trained and chosen on it: {hint}")


def _key(df: Any) -> Any:
    return df["title"].str.lower() + "\x00" + df["description"].str.lower()


def prepare(
    cfg: DataConfig,
    seed: int,
    raw_dir: str | Path = "data/raw",
    out_dir: str | Path = "data/prepared",
) -> PrepareResult:
    """Clean, cap (``data.max_train_rows``), split and leakage-check the fetched corpus."""

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    train = _clean(read_parquet(raw_dir / "train.parquet", "fetch"), "train.csv")
    test = _clean(read_parquet(raw_dir / "test.parquet", "fetch"), "test.csv")

    test_keys = set(_key(test))
    leaked = _key(train).isin(test_keys)
    n_leaked = int(leaked.sum())
    if n_leaked:
        lines = ", ".join(str(x) for x in train.loc[leaked, "line"].head(20))
        if cfg.leakage == "error":
            raise DataError(
                f"train.csv: {n_leaked} row(s) also appear in test.csv (lines {lines}); "
                "remove them or set data.leakage: drop"
            )
        print(f"prepare: dropping {n_leaked} train row(s) that also appear in test (lines {lines})")
        train = train[~leaked]
    train = train.drop_duplicates(subset=["title", "description", "label"])

    if cfg.max_train_rows is not None and len(train) > cfg.max_train_rows:
        train = train.sample(n=cfg.max_train_rows, random_state=seed)
    train = train.reset_index(drop=True)
    tr_idx, val_idx = stratified_split(train["label"].to_numpy(), cfg.val_fraction, seed)
    val = train.iloc[val_idx].reset_index(drop=True)
    train = train.iloc[tr_idx].reset_index(drop=True)

    # The split must never let a test row into training; checked, not assumed.
    assert not _key(train).isin(test_keys).any(), "a test row appears in train after prepare"

    check_trainable({"train": train, "val": val, "test": test}, cfg)
    from newsrnn.fetch import data_sha256

    try:
        data_sha = data_sha256(raw_dir)
    except FileNotFoundError:
        data_sha = "unknown"
    # All four files or none: a crash never leaves a new train split beside an old val split.
    with atomic_dir(out_dir) as tmp:
        for name, df in (("train", train), ("val", val), ("test", test)):
            write_parquet(df[["label", "title", "description", "line"]], tmp / f"{name}.parquet")
        write_json(
            tmp / "summary.json",
            {"train": len(train), "val": len(val), "test": len(test), "leaked_dropped": n_leaked,
             "data_sha256": data_sha},
        )
    print(f"prepare: train {len(train)}, val {len(val)}, test {len(test)} rows")
    return PrepareResult(len(train), len(val), len(test), n_leaked)
