"""Saving and loading the exported text model: ``.keras`` only, safe mode, sha256-verified.

A model directory holds ``model.keras`` and ``model.sha256``. Loading refuses other formats
(``.h5``, pickles, SavedModel), refuses a file whose sha256 does not match the one recorded at
write time, and always uses ``safe_mode=True`` so a crafted Lambda layer's code never runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from newsrnn.errors import ArtifactError
from newsrnn.fileio import sha256_file

MODEL_FILE = "model.keras"
DIGEST_FILE = "model.sha256"


def save_text_model(model: Any, model_dir: Path) -> str:
    """Save ``model`` into ``model_dir`` (normally a temporary dir from atomic_dir); return sha256."""
    path = model_dir / MODEL_FILE
    model.save(path)
    digest = sha256_file(path)
    (model_dir / DIGEST_FILE).write_text(digest + "\n")
    return digest


def resolve_model_file(path: str | os.PathLike[str]) -> Path:
    """Accept a model directory or a ``.keras`` file; refuse every other format by name."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if p.suffix != ".keras":
        raise ArtifactError(
            f"{p}: only .keras model files are accepted (got {p.suffix or 'no extension'}); "
            ".h5, pickle and SavedModel formats are refused because they can run code on load"
        )
    if not p.is_file():
        raise ArtifactError(f"{p}: model file not found")
    return p


def load_text_model(path: str | os.PathLike[str], verify: bool = True) -> Any:
    """Load the exported raw-text model with ``safe_mode=True`` after checking its sha256."""
    p = resolve_model_file(path)
    digest_path = p.parent / DIGEST_FILE
    if verify:
        if not digest_path.exists():
            raise ArtifactError(f"{digest_path}: missing; cannot verify {p} (re-run `newsrnn train`)")
        expected = digest_path.read_text().strip()
        got = sha256_file(p)
        if got != expected:
            raise ArtifactError(
                f"{p}: sha256 {got} does not match the recorded {expected}; the file is truncated "
                "or altered, re-run `newsrnn train`"
            )
    import zipfile

    if not zipfile.is_zipfile(p):
        raise ArtifactError(f"{p}: not a valid .keras model (truncated or not a zip archive); "
                            "re-run `newsrnn train`")
    from newsrnn.runtime import quiet_tensorflow

    quiet_tensorflow()
    import keras

    import newsrnn.nn.layers  # noqa: F401 - registers the custom layers before deserialising
    try:
        return keras.saving.load_model(p, safe_mode=True, compile=False)
    except ValueError as exc:
        raise ArtifactError(f"{p}: refused to load: {str(exc).splitlines()[0][:300]}") from None
    except Exception as exc:  # zip/JSON corruption surfaces as many types
        raise ArtifactError(f"{p}: not a valid .keras model ({type(exc).__name__}: {str(exc)[:200]})") from None
