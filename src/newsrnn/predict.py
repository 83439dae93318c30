"""``predict``: load the champion (or a given model) and classify raw texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from newsrnn.config import Config


def load_predictor(model: str | None, cfg: Config | None) -> Any:
    """A Predictor from a model dir / ``.keras`` file, or from a ``models:/`` URI in the registry.

    Registry models are downloaded and their ``model.keras`` is loaded the same safe way as a
    local file (sha256-checked, ``safe_mode=True``).
    """
    from newsrnn.predictor import Predictor

    if model is not None and not model.startswith(("models:/", "runs:/")):
        return Predictor.from_path(model)
    if cfg is None:
        raise ValueError("a params config is needed to resolve a registry model")
    uri = model or f"models:/{cfg.mlflow.registered_model}@champion"
    import mlflow

    from newsrnn.errors import ArtifactError
    from newsrnn.tracking import use_tracking_uri

    use_tracking_uri(cfg.tracking_uri())
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:
        raise ArtifactError(f"{uri}: cannot download from {cfg.tracking_uri()} ({str(exc)[:200]}); "
                            "run `newsrnn register` first or pass --model PATH") from None
    found = sorted(local.rglob("model.keras"))
    if not found:
        raise ArtifactError(f"{uri}: no model.keras inside the registered model")
    return Predictor.from_path(found[0])
