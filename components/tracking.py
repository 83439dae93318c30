"""Component ``tracking_setup``: check the tracking server and create the experiment, once."""

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tracking_setup(stage_params: str, mlflow_tracking_uri: str = "") -> str:
    """Fail the run here, before any GPU starts, when the cluster's MLflow server is missing,
    local or unreachable (``newsrnn.cluster.tracking_uri``); then create the experiment, which
    the parallel pods after it would otherwise race to create. Returns its id ("" when off)."""
    import json

    from newsrnn.cluster import ensure_experiment, tracking_uri
    from newsrnn.config import config_from_dict

    cfg = config_from_dict(json.loads(stage_params))
    if not cfg.mlflow.enabled:
        return ""
    uri = tracking_uri(cfg, mlflow_tracking_uri)
    exp = ensure_experiment(uri, cfg.mlflow.experiment)
    print(f"tracking_setup: experiment {cfg.mlflow.experiment!r} ({exp})")
    return exp
