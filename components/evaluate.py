"""Component ``evaluate@arch``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(stage_params: str, arch: str, prepared: Input[Dataset], model: Input[Model],
             metrics: Output[Metrics], plots: Output[Artifact], mlflow_tracking_uri: str = "") -> None:
    """``newsrnn.evaluate.evaluate``: the metrics JSON is the ``metrics`` artifact's file, and the
    headline numbers are also logged on it for the KFP UI."""
    import json
    import os

    from newsrnn.cluster import tracking_uri
    from newsrnn.config import config_from_dict
    from newsrnn.evaluate import evaluate as score

    cfg = config_from_dict(json.loads(stage_params))
    # In Kubeflow: refuse a local or unreachable store instead of logging into the pod's disk.
    uri = tracking_uri(cfg, mlflow_tracking_uri)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    result = score(cfg, arch, prepared.path, model.path, metrics.path, plots.path)
    for key in ("val_accuracy", "test_accuracy", "macro_f1", "val_macro_f1"):
        metrics.log_metric(key, float(result[key]))
    metrics.metadata["arch"] = arch
