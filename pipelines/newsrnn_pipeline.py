"""The newsrnn Kubeflow pipeline: wiring only, every step is a component from ``components/``.

fetch -> prepare -> vectorize -> ParallelFor(arch): [tune_plan -> ParallelFor(worker): tune ->
tune_finalize -> train -> evaluate] -> ensemble(Collected) -> register(Collected).

Compile with ``newsrnn kfp compile`` (writes ``pipelines/newsrnn_pipeline.yaml``); the defaults of
``params_json`` and the ``kfp:`` parameters are filled in from params.yaml at that point.
"""

from kfp import dsl, kubernetes

from components import (
    architectures,
    ensemble,
    evaluate,
    fetch,
    prepare,
    register,
    train,
    tune,
    tune_finalize,
    tune_plan,
    vectorize,
)

# (cpu request, cpu limit, memory request, memory limit) per kind of task. Requests are what the
# scheduler reserves; limits stop one task starving its node. Sized for the full AG News corpus.
SMALL = ("250m", "1", "512Mi", "1Gi")
DATA = ("1", "2", "4Gi", "8Gi")
GPU = ("4", "8", "16Gi", "32Gi")

# Secret keys that become env vars when present (optional: a cluster may lack some of them).
MLFLOW_SECRET_KEYS = {k: k for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                     "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                                     "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                     "AWS_SECRET_ACCESS_KEY")}
OPTUNA_SECRET_KEYS = {"NEWSRNN_OPTUNA_STORAGE": "NEWSRNN_OPTUNA_STORAGE"}
DATA_SECRET_KEYS = {k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                   "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_CONNECTION_STRING")}


def _resources(task: dsl.PipelineTask, sizes: "tuple[str, str, str, str]") -> dsl.PipelineTask:
    cpu_req, cpu_lim, mem_req, mem_lim = sizes
    return (task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim)
            .set_memory_request(mem_req).set_memory_limit(mem_lim))


def _gpu(task: dsl.PipelineTask, accelerator_type: str, accelerator_limit: int) -> dsl.PipelineTask:
    _resources(task, GPU)
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_limit)
    # GPU node pools are usually tainted so only GPU work lands there.
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    # A preempted or OOM-killed GPU pod is worth retrying; the backoff lets the node recover.
    return task.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0,
                          backoff_max_duration="900s")


@dsl.pipeline(
    name="newsrnn",
    description="AG News recurrent classifiers: fetch, prepare, vectorize, then per architecture "
                "parallel Optuna tuning, training and evaluation; the best is registered as @champion.",
)
def newsrnn_pipeline(
    params_json: str,
    data_version: str = "",
    dvc_repo: str = "",
    dvc_rev: str = "",
    dvc_remote: str = "",
    mlflow_tracking_uri: str = "",
    optuna_storage: str = "",
    tune_workers: int = 2,
    accelerator_type: str = "nvidia.com/gpu",
    accelerator_limit: int = 1,
    mlflow_secret: str = "newsrnn-mlflow",
    optuna_secret: str = "newsrnn-optuna",
    data_secret: str = "newsrnn-data",
) -> None:
    """Wire the stages; see docs/kubeflow.md for what each parameter means."""
    archs = architectures(params_json=params_json)
    _resources(archs, SMALL)

    raw = fetch(params_json=params_json, data_version=data_version, dvc_repo=dvc_repo,
                dvc_rev=dvc_rev, dvc_remote=dvc_remote)
    _resources(raw, DATA).after(archs)  # bad params fail in seconds, before any data moves
    kubernetes.use_secret_as_env(raw, secret_name=data_secret, secret_key_to_env=DATA_SECRET_KEYS,
                                 optional=True)

    prepared = prepare(params_json=params_json, raw=raw.outputs["raw"])
    _resources(prepared, DATA)
    vocab = vectorize(params_json=params_json, prepared=prepared.outputs["prepared"])
    _resources(vocab, DATA)

    with dsl.ParallelFor(archs.output, name="architectures") as arch:
        plan = tune_plan(params_json=params_json, arch=arch, prepared=prepared.outputs["prepared"],
                         workers=tune_workers, optuna_storage=optuna_storage)
        _resources(plan, SMALL).set_caching_options(False)  # reads the study's live state
        kubernetes.use_secret_as_env(plan, secret_name=optuna_secret,
                                     secret_key_to_env=OPTUNA_SECRET_KEYS, optional=True)

        # The worker takes arch and study from its own item, not from the outer loop: kfp's local
        # runner (2.17) hands a nested loop's tasks the inner item for every loop-item input.
        with dsl.ParallelFor(plan.output, name="tune-workers") as item:
            worker = tune(params_json=params_json, arch=item.arch, study=item.study,
                          worker=item.worker, quota=item.quota, prepared=prepared.outputs["prepared"],
                          vectorizer=vocab.outputs["vectorizer"], optuna_storage=optuna_storage,
                          accelerator_type=accelerator_type, accelerator_limit=accelerator_limit)
            _gpu(worker, accelerator_type, accelerator_limit)
            kubernetes.use_secret_as_env(worker, secret_name=optuna_secret,
                                         secret_key_to_env=OPTUNA_SECRET_KEYS, optional=True)

        tuned = tune_finalize(params_json=params_json, arch=arch, prepared=prepared.outputs["prepared"],
                              trials_run=dsl.Collected(worker.output), optuna_storage=optuna_storage,
                              mlflow_tracking_uri=mlflow_tracking_uri)
        _resources(tuned, SMALL)
        for secret, keys in ((optuna_secret, OPTUNA_SECRET_KEYS), (mlflow_secret, MLFLOW_SECRET_KEYS)):
            kubernetes.use_secret_as_env(tuned, secret_name=secret, secret_key_to_env=keys, optional=True)

        model = train(params_json=params_json, arch=arch, prepared=prepared.outputs["prepared"],
                      vectorizer=vocab.outputs["vectorizer"],
                      tuned=tuned.outputs["tuned"], mlflow_tracking_uri=mlflow_tracking_uri,
                      accelerator_type=accelerator_type, accelerator_limit=accelerator_limit)
        _gpu(model, accelerator_type, accelerator_limit)
        kubernetes.use_secret_as_env(model, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS,
                                     optional=True)

        scored = evaluate(params_json=params_json, arch=arch, prepared=prepared.outputs["prepared"],
                          model=model.outputs["model"], mlflow_tracking_uri=mlflow_tracking_uri)
        _resources(scored, DATA)
        kubernetes.use_secret_as_env(scored, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS,
                                     optional=True)

    mean = ensemble(params_json=params_json, prepared=prepared.outputs["prepared"],
                    models=dsl.Collected(model.outputs["model"]), mlflow_tracking_uri=mlflow_tracking_uri)
    _resources(mean, DATA)
    kubernetes.use_secret_as_env(mean, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS,
                                 optional=True)

    champion = register(params_json=params_json, metrics=dsl.Collected(scored.outputs["metrics"]),
                        models=dsl.Collected(model.outputs["model"]), ensemble_metrics=mean.outputs["metrics"],
                        ensemble_model=mean.outputs["model"], mlflow_tracking_uri=mlflow_tracking_uri)
    # Registering only moves an alias; it must run every time, never come from the cache.
    _resources(champion, SMALL).set_caching_options(False)
    kubernetes.use_secret_as_env(champion, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS,
                                 optional=True)
