"""``newsrnn kfp compile | run-local | submit``: the Kubeflow pipeline from the command line.

- ``compile`` writes ``pipelines/newsrnn_pipeline.yaml`` with params.yaml baked in as the
  parameters' defaults (the committed file; a test fails when it is stale).
- ``run-local`` runs the same pipeline with kfp's local ``SubprocessRunner`` in this Python
  environment: every task is a subprocess on this machine, tracking goes to the MLflow store that
  params.yaml names, and the tuning workers share an Optuna journal file.
- ``submit`` sends the compiled package to a Kubeflow Pipelines endpoint with ``kfp.Client``.

The pipeline and components live at the repository root (``pipelines/``, ``components/``), not in
the installed package: they are loaded from the checkout this module sits in, or the current
directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsrnn.config import Config, config_to_dict, load_config
from newsrnn.errors import KfpError

DEFAULT_PACKAGE = "pipelines/newsrnn_pipeline.yaml"
ENV_BASE_IMAGE = "NEWSRNN_KFP_BASE_IMAGE"
ENV_PARALLELISM = "NEWSRNN_KFP_PARALLELISM"
ENV_TOKEN = "NEWSRNN_KFP_TOKEN"
# Parameters that must never carry a password: credentials come from Kubernetes secrets.
_URL_PARAMS = ("mlflow_tracking_uri", "optuna_storage", "dvc_repo")
_PASSWORD_IN_URL = re.compile(r"://[^/@:]+:[^/@]+@")


def repo_root() -> Path:
    """The checkout holding ``pipelines/`` and ``components/``: beside this package, else cwd."""
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (candidate / "pipelines" / "newsrnn_pipeline.py").is_file() and \
                (candidate / "components").is_dir():
            return candidate
    raise KfpError("pipelines/newsrnn_pipeline.py not found beside the newsrnn package or in the current "
                   "directory; run from the project checkout")


def load_pipeline(base_image: str, parallelism: tuple[int, int] | None = None) -> Callable[..., Any]:
    """Import the pipeline with every component's ``base_image`` set to ``base_image``.

    The image (and the loops' ``parallelism``) are read when the module is imported, so any
    copy imported earlier with other values is dropped first.
    """
    root = str(repo_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ[ENV_BASE_IMAGE] = base_image
    if parallelism is not None:
        os.environ[ENV_PARALLELISM] = f"{parallelism[0]},{parallelism[1]}"
    for name in [m for m in sys.modules if m in ("components", "pipelines") or
                 m.startswith(("components.", "pipelines."))]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module("pipelines.newsrnn_pipeline").newsrnn_pipeline


def params_json(cfg: Config) -> str:
    """The whole validated params as canonical JSON: the pipeline's single config parameter.

    A local tracking URI (the laptop default ``sqlite:///mlflow.db``) is left out: in a pod it
    would be a file that dies with the pod. Tasks get the server from the run or the secret.
    """
    from newsrnn.cluster import local_store

    params = config_to_dict(cfg)
    if local_store(params["mlflow"]["tracking_uri"]):
        params["mlflow"]["tracking_uri"] = ""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def default_arguments(cfg: Config) -> dict[str, Any]:
    """Pipeline parameters that come from params.yaml (the compiled defaults)."""
    return {
        "params_json": params_json(cfg),
        "tune_workers": cfg.kfp.tune_workers,
        "gpu_type": cfg.kfp.accelerator_type,
        "gpu_count": str(cfg.kfp.accelerator_limit),
    }


def compile_pipeline(cfg: Config, out: str | Path = DEFAULT_PACKAGE) -> Path:
    """Compile the pipeline to ``out`` with params.yaml's values as parameter defaults."""
    from kfp import compiler

    from newsrnn.fileio import atomic_path

    pipeline = load_pipeline(cfg.kfp.base_image, (cfg.kfp.arch_parallelism, cfg.kfp.tune_parallelism))
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp_yaml = tmp.with_suffix(".yaml")
        try:
            compiler.Compiler().compile(pipeline, str(tmp_yaml), pipeline_parameters=default_arguments(cfg))
            tmp_yaml.replace(tmp)
        finally:
            tmp_yaml.unlink(missing_ok=True)
    print(f"kfp compile: wrote {out} (image {cfg.kfp.base_image})")
    return out


def data_version(cfg: Config, dvc_repo: str = "", dvc_rev: str = "") -> str:
    """What the fetch step's cache key should change with.

    DVC data: the commit the revision points at now (a branch moving must re-fetch). A mirror
    tarball pinned by sha256: that sha. Anything else may change under the same name, so the UTC
    date: a cached fetch is reused for a day at most.
    """
    if dvc_repo:
        from newsrnn.dvcdata import resolve_rev

        return f"git:{resolve_rev(dvc_repo, dvc_rev or None)}"
    if tuple(cfg.data.sources) == ("url",) and cfg.data.url_sha256:
        return f"sha256:{cfg.data.url_sha256}"
    return f"date:{dt.datetime.now(dt.UTC).date().isoformat()}"


def _declared_parameters(package: Path) -> dict[str, str]:
    """Root parameter name -> KFP parameter type, read from a compiled package."""
    import yaml

    spec = next(yaml.safe_load_all(package.read_text()))  # doc 2 is the Kubernetes platform spec
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("parameterType", "STRING") for name, p in params.items()}


def parse_overrides(pairs: list[str], declared: dict[str, str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings -> typed arguments, checked against the pipeline's parameters."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise KfpError(f"--arg {pair!r}: expected NAME=VALUE")
        if name not in declared:
            raise KfpError(f"--arg {name}: not a pipeline parameter; known: {', '.join(sorted(declared))}")
        kind = declared[name]
        try:
            if kind == "NUMBER_INTEGER":
                out[name] = int(value)
            elif kind == "NUMBER_DOUBLE":
                out[name] = float(value)
            elif kind == "BOOLEAN":
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[name] = value.lower() in ("true", "1")
            elif kind in ("LIST", "STRUCT"):
                out[name] = json.loads(value)
            else:
                out[name] = value
        except ValueError:
            raise KfpError(f"--arg {name}={value!r}: expected a value of type {kind}") from None
        if name in _URL_PARAMS and _PASSWORD_IN_URL.search(str(out[name])):
            raise KfpError(f"--arg {name}: the URL contains a password; put it in the Kubernetes secret "
                           "(README.md, Kubeflow Pipelines: Secrets) instead of a run parameter, where anyone "
                           "can read it")
    return out


def run_arguments(cfg: Config, declared: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    """The run's arguments: params.yaml values, the data version, then ``--arg`` overrides."""
    args = default_arguments(cfg)
    args.update(parse_overrides(overrides, declared))
    if "params_json" in args:
        from newsrnn.config import config_from_dict

        # An overridden params_json must still be a valid params file.
        config_from_dict(json.loads(args["params_json"]))
    if not args.get("data_version"):
        args["data_version"] = data_version(cfg, args.get("dvc_repo", ""), args.get("dvc_rev", ""))
    return {k: v for k, v in args.items() if k in declared}


def _absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute, so task subprocesses and this process agree."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def run_local(cfg: Config, pipeline_root: str | Path = "kfp_local",
              overrides: list[str] | None = None) -> Any:
    """Run the whole pipeline here with kfp's ``SubprocessRunner`` (tasks use this interpreter).

    Accelerators, resources, retries, caching and Kubernetes settings are cluster-only and are
    ignored by the local runner. Tracking goes to ``MLFLOW_TRACKING_URI`` or params'
    ``mlflow.tracking_uri``; the Optuna studies to ``NEWSRNN_OPTUNA_STORAGE``, ``tune.storage``
    or a journal file under the pipeline root (safe for parallel worker processes).
    """
    from kfp import local

    from newsrnn.cluster import in_kubeflow
    from newsrnn.tune import ENV_STORAGE

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    pipeline = load_pipeline(cfg.kfp.base_image, (cfg.kfp.arch_parallelism, cfg.kfp.tune_parallelism))
    declared = {name: _DSL_TO_KFP.get(str(spec.type), "STRING")
                for name, spec in pipeline.component_spec.inputs.items()}
    args = run_arguments(cfg, declared, overrides or [])
    if in_kubeflow():
        # A cluster rehearsal: tasks find their servers in the environment, as a pod finds them in
        # its secrets, and the laptop fallbacks below (SQLite, a journal file) are not taken.
        refuse_local_stores(cfg, {k: v for k, v in args.items() if k != "mlflow_tracking_uri"})
    else:
        args.setdefault("mlflow_tracking_uri", "")
        args["mlflow_tracking_uri"] = args["mlflow_tracking_uri"] or _absolute_tracking_uri(cfg.tracking_uri())
        args.setdefault("optuna_storage", "")
        args["optuna_storage"] = (args["optuna_storage"] or os.environ.get(ENV_STORAGE) or cfg.tune.storage
                                  or f"journal:{root / 'optuna.journal'}")
        if cfg.mlflow.enabled:
            _init_mlflow(args["mlflow_tracking_uri"], cfg.mlflow.experiment)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    print(f"kfp run-local: pipeline root {root}; MLflow {args.get('mlflow_tracking_uri') or 'from the environment'}")
    try:
        return pipeline(**args)
    except RuntimeError as exc:
        raise KfpError(f"local run failed: {exc} (task logs are above; outputs under {root})") from None


def _init_mlflow(uri: str, experiment: str) -> None:
    """Create the store's schema and the experiment before tasks run in parallel.

    Two task processes creating a fresh SQLite store at once race ("table already exists") and
    one of them loses its tracking; doing it once here first avoids that.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name(experiment) is None:
        try:
            client.create_experiment(experiment)
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by someone else: fine


# Pipeline input types as the DSL names them -> as the compiled package names them.
_DSL_TO_KFP = {"String": "STRING", "Integer": "NUMBER_INTEGER", "Float": "NUMBER_DOUBLE",
               "Boolean": "BOOLEAN", "List": "LIST", "Dict": "STRUCT"}


def submit(cfg: Config, host: str, package: str | Path = DEFAULT_PACKAGE,
           overrides: list[str] | None = None) -> Any:
    """Submit the compiled ``package`` to ``host`` under params' kfp experiment and run name."""
    import kfp

    package = Path(package)
    if not package.is_file():
        raise KfpError(f"{package}: not found; run `newsrnn kfp compile` first")
    declared = _declared_parameters(package)
    args = run_arguments(cfg, declared, overrides or [])
    refuse_local_stores(cfg, args)
    compiled_image = _compiled_images(package)
    if compiled_image and compiled_image != {cfg.kfp.base_image}:
        print(f"kfp submit: warning: {package} runs {sorted(compiled_image)} but params say "
              f"{cfg.kfp.base_image}; run `newsrnn kfp compile` to rebuild it", file=sys.stderr)
    run_name = f"{cfg.kfp.run_name}-{dt.datetime.now(dt.UTC).strftime('%Y%m%d-%H%M%S')}"
    try:
        client = kfp.Client(host=host, existing_token=os.environ.get(ENV_TOKEN) or None)
        result = client.create_run_from_pipeline_package(
            str(package), arguments=args, run_name=run_name, experiment_name=cfg.kfp.experiment)
    except Exception as exc:  # urllib3/kfp-server-api raise many types; the endpoint and reason matter
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise KfpError(f"{host}: submitting to Kubeflow Pipelines failed: {reason} (check --host, "
                       f"that the API answers at <host>/apis/v2beta1/healthz, and {ENV_TOKEN} "
                       "if the endpoint needs a token)") from None
    print(f"kfp submit: run {run_name} ({result.run_id}) in experiment {cfg.kfp.experiment}: "
          f"{host.rstrip('/')}/#/runs/details/{result.run_id}")
    return result


def refuse_local_stores(cfg: Config, args: dict[str, Any]) -> None:
    """Stop a submit whose tasks would track or tune into files inside their pods.

    An empty ``mlflow_tracking_uri`` is fine (the tasks read ``MLFLOW_TRACKING_URI`` from the
    secret, and ``tracking_setup`` fails the run at once if it is missing); a ``sqlite:``/``file:``
    URI or a loopback host is refused here, with the secret to create.
    """
    from newsrnn.cluster import submit_checks

    problems = submit_checks(args, cfg)
    if problems:
        raise KfpError("; ".join(problems))


def _compiled_images(package: Path) -> set[str]:
    import yaml

    spec = next(yaml.safe_load_all(package.read_text()))
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return {e["container"]["image"] for e in executors.values() if "container" in e}


def main(args: argparse.Namespace) -> None:
    """Dispatch ``newsrnn kfp <action>`` (arguments as built by ``newsrnn.cli.build_parser``)."""
    cfg = load_config(args.params)
    action = args.kfp_command
    if action == "compile":
        compile_pipeline(cfg, args.out)
    elif action == "run-local":
        run_local(cfg, args.pipeline_root, getattr(args, "arg", None) or [])
    elif action == "submit":
        submit(cfg, args.host, args.package, args.arg)
    else:  # argparse restricts the choices; this guards a parser change
        raise KfpError(f"unknown kfp action {action!r}: use compile, run-local or submit")
