"""Components for ``tune@arch``: plan the budget, run k workers on one study, finalize it.

Every worker of an architecture joins the same Optuna study (``newsrnn.tune.study_name``) in an
RDB storage. The storage URL comes from the ``optuna_storage`` parameter (local runs, or a
password-less in-cluster URL) or, on a cluster, from ``NEWSRNN_OPTUNA_STORAGE`` set from a
Kubernetes secret, so a password never appears in the run's parameters or outputs. A file
storage would be private to one pod, so in Kubeflow a missing or local URL is an error
(``newsrnn.cluster.optuna_storage``), not a fallback.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune_plan(stage_params: str, arch: str, prepared: Input[Dataset], workers: int,
              optuna_storage: str = "") -> list:
    """Split the study's remaining trials over ``workers`` up front; one loop item per busy worker.

    Items carry the architecture, study name and this stage's params so the worker loop needs
    nothing else from the outer loop. With nothing to run, one zero-quota item keeps the fan-in
    well-defined.
    """
    import json
    import os

    from newsrnn.cluster import optuna_storage as checked_storage
    from newsrnn.config import config_from_dict
    from newsrnn.data import prepared_data_sha
    from newsrnn.tune import ENV_STORAGE, create_study, finished_count, seed_study, split_quota, study_name

    cfg = config_from_dict(json.loads(stage_params))
    # The same study name `newsrnn tune` uses for this data, so both can share one storage.
    name = study_name(cfg, arch, prepared_data_sha(prepared.path))
    quotas = [0]
    if cfg.trials_for(arch) > 0:
        url = checked_storage(optuna_storage or os.environ.get(ENV_STORAGE) or cfg.tune.storage or "")
        if not url:
            raise ValueError(f"tune.n_trials is {cfg.tune.n_trials} but no shared Optuna storage is set: "
                             f"pass optuna_storage, put {ENV_STORAGE} in the Optuna secret, or set "
                             "tune.storage (an RDB URL every worker pod can reach)")
        study = create_study(cfg, name, url)
        seed_study(study, cfg, arch)
        remaining = max(0, cfg.trials_for(arch) - finished_count(study))
        quotas = [q for q in split_quota(remaining, workers) if q > 0] or [0]
    print(f"tune_plan: {arch}: study {name}, quotas {quotas}")
    return [{"arch": arch, "study": name, "worker": i, "quota": q, "params": stage_params}
            for i, q in enumerate(quotas)]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune(stage_params: str, arch: str, study: str, worker: int, quota: int, prepared: Input[Dataset],
         vectorizer: Input[Model], optuna_storage: str = "", gpu_type: str = "", gpu_count: str = "") -> int:
    """One tuning worker: ``newsrnn.tune.run_worker`` for ``quota`` trials of ``study``.

    ``gpu_*`` echo the GPU request into the log; as inputs they make the compiler declare those
    pipeline parameters on the nested loop, where the request reads them (see ``train``).
    """
    import json
    import os

    from newsrnn.cluster import optuna_storage as checked_storage
    from newsrnn.config import config_from_dict
    from newsrnn.tune import ENV_STORAGE, run_worker

    cfg = config_from_dict(json.loads(stage_params))
    url = optuna_storage or os.environ.get(ENV_STORAGE) or cfg.tune.storage or ""
    if quota > 0:
        url = checked_storage(url)
    ran = run_worker(cfg, arch, url, study, quota, prepared.path, vectorizer.path)
    print(f"tune: {arch} worker {worker} ran {ran} trial(s) of {study} "
          f"(requested {gpu_count} x {gpu_type or 'no accelerator'}; visible: "
          f"{os.environ.get('NVIDIA_VISIBLE_DEVICES') or 'none'})")
    return ran


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune_finalize(stage_params: str, arch: str, prepared: Input[Dataset], trials_run: list[int],
                  tuned: Output[Artifact], optuna_storage: str = "", mlflow_tracking_uri: str = "") -> float:
    """``newsrnn.tune.finalize`` (or ``tune`` when tuning is off): ``tuned/params.yaml`` + plots.

    ``trials_run`` (the workers' collected counts) makes this wait for every worker. Returns the
    best trial's validation accuracy (-1 when no trial completed).
    """
    import json
    import os
    from pathlib import Path

    from newsrnn.cluster import optuna_storage as checked_storage
    from newsrnn.cluster import tracking_uri
    from newsrnn.config import config_from_dict
    from newsrnn.data import prepared_data_sha
    from newsrnn.tune import ENV_STORAGE, finalize, study_name
    from newsrnn.tune import tune as tune_defaults

    cfg = config_from_dict(json.loads(stage_params))
    uri = tracking_uri(cfg, mlflow_tracking_uri)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    out, plots = Path(tuned.path) / "params.yaml", Path(tuned.path) / "plots"
    if cfg.trials_for(arch) == 0:
        result = tune_defaults(cfg, arch, out_path=out, plots_dir=plots)
    else:
        url = checked_storage(optuna_storage or os.environ.get(ENV_STORAGE) or cfg.tune.storage or "")
        result = finalize(cfg, arch, url, study_name(cfg, arch, prepared_data_sha(prepared.path)), out, plots)
    print(f"tune_finalize: {arch}: {sum(trials_run)} trial(s) run by the workers; "
          f"best {result.get('best_value')}")
    best = result.get("best_value")
    tuned.metadata.update({"arch": arch, "best_value": best, "params": result.get("params") or {}})
    return -1.0 if best is None else float(best)
