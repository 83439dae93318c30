"""A synthetic corpus in the original ag_news_csv layout, learnable but not trivial.

Each class has its own topic words; every text mixes them with shared filler words and a few
words from other classes, and uses the corpus's quirks (``\\`` line breaks, ``#39;`` entities).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

TOPICS = {
    1: "war election minister iraq president talks troops government peace nuclear embassy rebels".split(),
    2: "game season coach team win cup league match score player olympic tournament".split(),
    3: "stocks profit oil shares market bank prices earnings investors economy trade deal".split(),
    4: "software internet computer microsoft space nasa google phone research science web chip".split(),
}
FILLER = "the a of to in on for with after new says over from by at about".split()


def _text(rng: random.Random, klass: int, n: int) -> str:
    words = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            words.append(rng.choice(TOPICS[klass]))
        elif r < 0.55:
            words.append(rng.choice(TOPICS[rng.randint(1, 4)]))
        else:
            words.append(rng.choice(FILLER))
    return " ".join(words)


def make_rows(n: int, seed: int) -> list[tuple[str, str, str]]:
    """``n`` rows (class, title, description), classes balanced."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        klass = i % 4 + 1
        title = _text(rng, klass, rng.randint(3, 8)).capitalize()
        desc = _text(rng, klass, rng.randint(8, 25))
        if i % 7 == 0:
            desc = desc.replace(" ", "\\", 1) + " it#39;s"
        rows.append((str(klass), f"{title} #{seed}-{i}", desc))
    return rows


def write_corpus(directory: Path, n_train: int = 400, n_test: int = 120, seed: int = 0) -> Path:
    """Write train.csv and test.csv (all fields quoted, like the original) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        with open(directory / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(make_rows(n, s))
    return directory
