"""Component ``ensemble``: the mean of the ``ensemble`` members, built and evaluated."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ensemble(stage_params: str, prepared: Input[Dataset], models: Input[list[Model]], model: Output[Model],
             metrics: Output[Metrics], plots: Output[Artifact], mlflow_tracking_uri: str = "") -> None:
    """``newsrnn.ensemble.run_stage`` over the collected models, picked by the architecture each
    one's train.json names (collected lists have no guaranteed order). With ``ensemble: []``
    the metrics file records a skip, which register ignores."""
    import json
    import os
    from pathlib import Path

    from newsrnn.cluster import tracking_uri
    from newsrnn.config import config_from_dict
    from newsrnn.ensemble import run_stage

    cfg = config_from_dict(json.loads(stage_params))
    # In Kubeflow: refuse a local or unreachable store instead of logging into the pod's disk.
    uri = tracking_uri(cfg, mlflow_tracking_uri)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    by_arch = {json.loads((Path(m.path) / "train.json").read_text())["arch"]: Path(m.path) for m in models}
    missing = [a for a in cfg.ensemble if a not in by_arch]
    if missing:
        raise ValueError(f"ensemble members {missing} have no trained model among {sorted(by_arch)}")
    result = run_stage(cfg, out_dir=model.path, prepared_dir=prepared.path, metrics_path=metrics.path,
                       plots_dir=plots.path, dirs=[by_arch[a] for a in cfg.ensemble], pool=by_arch)
    metrics.metadata["arch"] = "ensemble"
    if not result.get("skipped"):
        for key in ("val_accuracy", "test_accuracy", "macro_f1", "val_macro_f1"):
            metrics.log_metric(key, float(result[key]))
