"""Component ``train@arch``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(stage_params: str, arch: str, prepared: Input[Dataset],
          vectorizer: Input[Model], tuned: Input[Artifact], model: Output[Model],
          mlflow_tracking_uri: str = "", gpu_type: str = "", gpu_count: str = "") -> float:
    """``newsrnn.train.train`` with the tuned params laid over ``arch``; returns best val accuracy.

    ``gpu_*`` record the pod's GPU request on the model artifact; as inputs they also make the
    compiler declare those pipeline parameters on the loop, where the request reads them (kfp
    2.17 does not do that for resource fields alone). They are not named ``accelerator_type`` or
    ``accelerator_count``: the compiler feeds inputs of those names with its own placeholders.
    """
    import json
    import os
    import tempfile
    from pathlib import Path

    from newsrnn.cluster import tracking_uri
    from newsrnn.config import config_from_dict
    from newsrnn.train import train as fit

    cfg = config_from_dict(json.loads(stage_params))
    # In Kubeflow: refuse a local or unreachable store instead of logging into the pod's disk.
    uri = tracking_uri(cfg, mlflow_tracking_uri)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    # A retried pod starts on a fresh disk, so checkpoints live and die with this attempt.
    with tempfile.TemporaryDirectory() as ckpt:
        result = fit(cfg, arch, prepared.path, vectorizer.path, Path(tuned.path) / "params.yaml",
                     model.path, ckpt)
    model.metadata.update({"arch": arch, "best_val_accuracy": result.best_val_accuracy,
                           "epochs": result.epochs, "mlflow_run_id": result.run_id or "",
                           "gpu_request": f"{gpu_count} x {gpu_type}" if gpu_type else "",
                           "gpus_visible": os.environ.get("NVIDIA_VISIBLE_DEVICES", "")})
    return float(result.best_val_accuracy)
