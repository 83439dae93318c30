"""The newsrnn Kubeflow pipeline: wiring only, every step is a component from ``components/``.

architectures, stage_configs (params cut per stage) -> fetch -> prepare -> vectorize; tracking_setup ->
ParallelFor(arch): [tune_plan -> ParallelFor(worker): tune -> tune_finalize -> train -> evaluate]
-> ensemble(Collected) -> register(Collected).

Compile with ``newsrnn kfp compile`` (writes ``pipelines/newsrnn_pipeline.yaml``); the defaults of
``params_json`` and the ``kfp:`` parameters are filled in from params.yaml at that point.
``tests/integration/test_kfp_conformance.py`` checks the result against the KFP backend's rules.
"""

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel

from components import (
    architectures,
    ensemble,
    evaluate,
    fetch,
    prepare,
    register,
    stage_configs,
    tracking_setup,
    train,
    tune,
    tune_finalize,
    tune_plan,
    vectorize,
)
from components.image import parallelism

# (cpu request, cpu limit, memory request, memory limit, timeout in seconds) per kind of task.
# Requests are what the scheduler reserves; limits stop one task starving its node; the timeout
# (the pod's activeDeadlineSeconds) stops a hung pod holding a node, or a GPU, forever. Sized for
# the full AG News corpus.
SMALL = ("250m", "1", "512Mi", "1Gi", 30 * 60)
DATA = ("1", "2", "4Gi", "8Gi", 2 * 3600)
GPU = ("4", "8", "16Gi", "32Gi", 12 * 3600)
# Several GPUs in one pod (MirroredStrategy, NCCL) share memory through /dev/shm, which is 64 MiB
# in a container by default; a memory-backed emptyDir there lifts that (it counts against the
# pod's memory limit).
SHM_SIZE = "4Gi"
ARCH_PARALLELISM, TUNE_PARALLELISM = parallelism()

# Secret keys that become env vars when present (optional: a cluster may lack some of them).
MLFLOW_SECRET_KEYS = {k: k for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                     "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                                     "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                     "AWS_SECRET_ACCESS_KEY")}
OPTUNA_SECRET_KEYS = {"NEWSRNN_OPTUNA_STORAGE": "NEWSRNN_OPTUNA_STORAGE"}
# GCS wants a key *file*: GOOGLE_APPLICATION_CREDENTIALS is a path, so the key is mounted from
# the data secret (key gcs.json) and fetch points the variable at it when it is there (without it,
# workload identity or the node's service account applies).
DATA_SECRET_KEYS = {k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                   "AWS_ENDPOINT_URL", "AZURE_STORAGE_CONNECTION_STRING")}
GCS_KEY_DIR = "/var/secrets/newsrnn-data"


def _task(task: dsl.PipelineTask, sizes: "tuple[str, str, str, str, int]",
          image_pull_secret: PipelineChannel, retries: int = 0) -> dsl.PipelineTask:
    cpu_req, cpu_lim, mem_req, mem_lim, timeout = sizes
    task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim).set_memory_request(mem_req).set_memory_limit(mem_lim)
    kubernetes.set_timeout(task, timeout)
    kubernetes.set_image_pull_secrets(task, [image_pull_secret])
    if retries:
        # Tasks that call a server (MLflow, Optuna's database, a DVC remote) or hold a GPU node
        # that may be preempted retry with a backoff that lets the other side recover.
        task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0,
                       backoff_max_duration="900s")
    return task


def _gpu(task: dsl.PipelineTask, gpu_type: PipelineChannel, gpu_count: PipelineChannel,
         gpu_node_selector: PipelineChannel, image_pull_secret: PipelineChannel) -> dsl.PipelineTask:
    _task(task, GPU, image_pull_secret, retries=2)
    # Both are STRING parameters: the driver reads a resource field's parameter with
    # GetStringValue() and silently drops the GPU limit for a number.
    task.set_accelerator_type(gpu_type).set_accelerator_limit(gpu_count)
    # GPU node pools are usually tainted so only GPU work lands there.
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    kubernetes.add_node_selector_json(task, gpu_node_selector)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=SHM_SIZE)
    return task


def _tracked(task: dsl.PipelineTask, mlflow_secret: PipelineChannel) -> None:
    """A task that logs to MLflow: the server's secret, and the run id for its lineage tag.

    The backend labels every pod of a run with ``pipeline/runid`` (``LabelKeyWorkflowRunId`` in
    backend/src/common/util/consts.go); read through the downward API it adds nothing to the
    task's inputs, so a cached task stays cached (a run-id input would change every run).
    """
    _secret(task, mlflow_secret, MLFLOW_SECRET_KEYS)
    kubernetes.use_field_path_as_env(task, env_name="NEWSRNN_KFP_RUN_ID",
                                     field_path="metadata.labels['pipeline/runid']")


def _secret(task: dsl.PipelineTask, name: PipelineChannel, keys: "dict[str, str]") -> None:
    kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env=keys, optional=True)


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
    gpu_type: str = "nvidia.com/gpu",
    gpu_count: str = "1",
    # Not Optional[...] = None: a null parameter fails the loop DAGs it is passed into (their
    # inputs are not optional), and an empty string fails the pull-secret lookup. {} selects no
    # node label; a pull secret that does not exist only makes the kubelet warn and pull anonymously.
    gpu_node_selector: dict = {},  # noqa: B006 - kfp reads the default, nothing mutates it
    image_pull_secret: str = "newsrnn-registry",
    mlflow_secret: str = "newsrnn-mlflow",
    optuna_secret: str = "newsrnn-optuna",
    data_secret: str = "newsrnn-data",
) -> None:
    """Wire the stages; README.md (Kubeflow Pipelines) says what each parameter means."""
    pull = image_pull_secret
    archs = architectures(params_json=params_json)
    _task(archs, SMALL, pull)
    cut = stage_configs(params_json=params_json)
    _task(cut, SMALL, pull)

    raw = fetch(stage_params=cut.outputs["fetch"], data_version=data_version, dvc_repo=dvc_repo,
                dvc_rev=dvc_rev, dvc_remote=dvc_remote)
    _task(raw, DATA, pull, retries=2).after(archs)  # bad params fail in seconds, before any data moves
    _secret(raw, data_secret, DATA_SECRET_KEYS)
    kubernetes.use_secret_as_volume(raw, secret_name=data_secret, mount_path=GCS_KEY_DIR, optional=True)
    raw.set_env_variable("NEWSRNN_GCS_KEY_FILE", f"{GCS_KEY_DIR}/gcs.json")

    prepared = prepare(stage_params=cut.outputs["prepare"], raw=raw.outputs["raw"])
    _task(prepared, DATA, pull)
    vocab = vectorize(stage_params=cut.outputs["vectorize"], prepared=prepared.outputs["prepared"])
    _task(vocab, DATA, pull)

    # Once, before the fan-out: a missing or local MLflow server fails here, not in every GPU pod.
    setup = tracking_setup(stage_params=cut.outputs["tracking"], mlflow_tracking_uri=mlflow_tracking_uri)
    _task(setup, SMALL, pull, retries=2).set_caching_options(False)  # checks a live server
    _tracked(setup, mlflow_secret)

    with dsl.ParallelFor(archs.output, name="architectures", parallelism=ARCH_PARALLELISM) as arch:
        plan = tune_plan(stage_params=arch.tune, arch=arch.arch, prepared=prepared.outputs["prepared"],
                         workers=tune_workers, optuna_storage=optuna_storage).after(setup)
        _task(plan, SMALL, pull, retries=2).set_caching_options(False)  # reads the study's live state
        _secret(plan, optuna_secret, OPTUNA_SECRET_KEYS)

        # The worker takes arch, study and params from its own item, not from the outer loop: kfp's
        # local runner (2.17) hands a nested loop's tasks the inner item for every loop-item input.
        with dsl.ParallelFor(plan.output, name="tune-workers", parallelism=TUNE_PARALLELISM) as item:
            worker = tune(stage_params=item.params, arch=item.arch, study=item.study, worker=item.worker,
                          quota=item.quota, prepared=prepared.outputs["prepared"],
                          vectorizer=vocab.outputs["vectorizer"], optuna_storage=optuna_storage,
                          gpu_type=gpu_type, gpu_count=gpu_count)
            _gpu(worker, gpu_type, gpu_count, gpu_node_selector, pull)
            _secret(worker, optuna_secret, OPTUNA_SECRET_KEYS)

        tuned = tune_finalize(stage_params=arch.tune, arch=arch.arch, prepared=prepared.outputs["prepared"],
                              trials_run=dsl.Collected(worker.output), optuna_storage=optuna_storage,
                              mlflow_tracking_uri=mlflow_tracking_uri)
        _task(tuned, SMALL, pull, retries=2)
        _secret(tuned, optuna_secret, OPTUNA_SECRET_KEYS)
        _tracked(tuned, mlflow_secret)

        model = train(stage_params=arch.train, arch=arch.arch, prepared=prepared.outputs["prepared"],
                      vectorizer=vocab.outputs["vectorizer"], tuned=tuned.outputs["tuned"],
                      mlflow_tracking_uri=mlflow_tracking_uri, gpu_type=gpu_type, gpu_count=gpu_count)
        _gpu(model, gpu_type, gpu_count, gpu_node_selector, pull)
        _tracked(model, mlflow_secret)

        scored = evaluate(stage_params=arch.evaluate, arch=arch.arch, prepared=prepared.outputs["prepared"],
                          model=model.outputs["model"], mlflow_tracking_uri=mlflow_tracking_uri)
        _task(scored, DATA, pull, retries=2)
        _tracked(scored, mlflow_secret)

    mean = ensemble(stage_params=cut.outputs["ensemble"], prepared=prepared.outputs["prepared"],
                    models=dsl.Collected(model.outputs["model"]), mlflow_tracking_uri=mlflow_tracking_uri)
    _task(mean, DATA, pull, retries=2)
    _tracked(mean, mlflow_secret)

    champion = register(stage_params=cut.outputs["register"], metrics=dsl.Collected(scored.outputs["metrics"]),
                        models=dsl.Collected(model.outputs["model"]), ensemble_metrics=mean.outputs["metrics"],
                        ensemble_model=mean.outputs["model"], mlflow_tracking_uri=mlflow_tracking_uri)
    # Registering only moves an alias; it must run every time, never come from the cache.
    _task(champion, SMALL, pull, retries=2).set_caching_options(False)
    _tracked(champion, mlflow_secret)
