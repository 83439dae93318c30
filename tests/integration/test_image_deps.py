"""The cluster image's dependencies, resolved without Docker and without a GPU.

The Dockerfile installs ``pyproject.toml``'s dependencies plus the ``gpu`` extra against
``constraints.txt``. ``pip install --dry-run --report`` runs the same resolution here: a pin that
cannot install together with the others (or a package the image needs but nobody pinned) fails
this test instead of the image build on a CI runner with Docker, or worse, a pod at start-up.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

# What a cluster needs beyond the laptop: DVC remotes on S3, GCS, Azure; boto3 for an MLflow
# artifact store on S3; TensorFlow's CUDA build (nvidia-* wheels).
IMAGE_NEEDS = ("dvc-s3", "dvc-gs", "dvc-azure", "boto3", "s3fs", "gcsfs", "adlfs", "tensorflow",
               "nvidia-cudnn-cu12")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line.strip())
        if m:
            pins[_canon(m.group(1))] = m.group(3)
    return pins


def _resolve(extras: str, tmp_path: Path) -> dict[str, str]:
    report = tmp_path / f"report-{extras.replace(',', '-')}.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), "-c", str(ROOT / "constraints.txt"), f"{ROOT}[{extras}]"],
                         capture_output=True, text=True, timeout=1800, check=False)
    assert out.returncode == 0, f".[{extras}] does not resolve against constraints.txt:\n{out.stderr[-3000:]}"
    return {_canon(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


@pytest.mark.slow
def test_gpu_image_resolves_against_the_pins(tmp_path: Path) -> None:
    """`.[gpu]` (the image) installs exactly the pinned versions, cluster plugins included."""
    resolved = _resolve("gpu", tmp_path)
    pins = _pins()
    for name in IMAGE_NEEDS:
        assert name in resolved, f"the image lacks {name}"
    unpinned = sorted(n for n in resolved if n not in pins and n != "newsrnn")
    assert not unpinned, f"not pinned in constraints.txt: {unpinned}"
    moved = {n: (pins[n], v) for n, v in resolved.items() if n in pins and pins[n] != v}
    assert not moved, f"resolved away from the pins: {moved}"


def test_cluster_packages_are_in_the_gpu_extra_and_pinned() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gpu = {_canon(re.split(r"[\[=<>~ ]", r)[0]) for r in extras["gpu"]}
    assert {"dvc-s3", "dvc-gs", "dvc-azure", "boto3"} <= gpu
    pins = _pins()
    for name in ("dvc-s3", "dvc-gs", "dvc-azure", "boto3", "moto", "s3fs", "gcsfs", "adlfs"):
        assert name in pins, f"{name} is not pinned in constraints.txt"
