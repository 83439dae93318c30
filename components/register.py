"""Component ``register``: the champion among every architecture's evaluation."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(stage_params: str, metrics: Input[list[Metrics]], models: Input[list[Model]],
             ensemble_metrics: Input[Metrics], ensemble_model: Input[Model],
             champion: Output[Artifact], mlflow_tracking_uri: str = "") -> str:
    """``newsrnn.register.register`` over the collected (metrics, model) pairs; returns the champion.

    Collected lists are not guaranteed to be in the same order on every backend, so metrics and
    models are paired by the architecture each file names, then put in ``models`` order (ties
    go to the earlier architecture, as with ``dvc repro``). The ensemble comes last.
    """
    import json
    import os
    from pathlib import Path

    from newsrnn.cluster import tracking_uri
    from newsrnn.config import config_from_dict
    from newsrnn.register import register as register_champion

    cfg = config_from_dict(json.loads(stage_params))
    # In Kubeflow: refuse a local or unreachable store instead of logging into the pod's disk.
    uri = tracking_uri(cfg, mlflow_tracking_uri)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    model_dirs = {json.loads((Path(m.path) / "train.json").read_text())["arch"]: m.path for m in models}
    metric_files = {json.loads(Path(m.path).read_text())["arch"]: m.path for m in metrics}
    order = [a for a in cfg.models if a in metric_files]
    candidates = [(metric_files[a], model_dirs[a]) for a in order]
    if cfg.ensemble:  # a skipped ensemble's metrics say so, and register ignores them
        candidates.append((ensemble_metrics.path, ensemble_model.path))
    result = register_champion(cfg, candidates, champion.path)
    champion.metadata.update({k: result[k] for k in ("name", "alias", "version", "arch", "val_accuracy")})
    return str(result["arch"])
