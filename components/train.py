"""Component ``train@arch``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(params_json: str, arch: str, prepared: Input[Dataset],
          vectorizer: Input[Model], tuned: Input[Artifact], model: Output[Model],
          mlflow_tracking_uri: str = "", accelerator_type: str = "", accelerator_limit: int = 0) -> float:
    """``newsrnn.train.train`` with the tuned params laid over ``arch``; returns best val accuracy.

    ``accelerator_*`` record the pod's GPU request on the model artifact; as inputs they also
    make the compiler pass those pipeline parameters into the loop, where the request reads them.
    """
    import json
    import os
    import tempfile
    from pathlib import Path

    from newsrnn.config import config_from_dict
    from newsrnn.train import train as fit

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    cfg = config_from_dict(json.loads(params_json))
    # A retried pod starts on a fresh disk, so checkpoints live and die with this attempt.
    with tempfile.TemporaryDirectory() as ckpt:
        result = fit(cfg, arch, prepared.path, vectorizer.path, Path(tuned.path) / "params.yaml",
                     model.path, ckpt)
    model.metadata.update({"arch": arch, "best_val_accuracy": result.best_val_accuracy,
                           "epochs": result.epochs, "mlflow_run_id": result.run_id or "",
                           "accelerator": f"{accelerator_limit} x {accelerator_type}" if accelerator_type
                           else ""})
    return float(result.best_val_accuracy)
