"""The compiled pipeline against the rules the Kubeflow Pipelines backend applies to it.

kfp's local runner ignores everything below; a cluster's driver does not. Each rule cites the
backend code it comes from (github.com/kubeflow/pipelines, master of 2026-08-21, commit 7b70c7b):

- backend/src/v2/driver/driver.go, ``initPodSpecPatch``: cpu/memory fields (``getPodResource``),
  the accelerator type and count, and the image go through
  ``resolvePodSpecInputRuntimeParameter`` (backend/src/v2/driver/resolve.go), which returns
  ``val.GetStringValue()``: "" for a NUMBER parameter. An empty count then skips the
  ``nvidia.com/gpu`` limit without an error (``if acceleratorType != "" && acceleratorCount != ""``).
- resolve.go, ``resolveInputParameter``: a task's ``componentInputParameter`` must exist in the
  parent DAG's inputs ("parent DAG does not have input parameter"); a null value (optional pipeline
  input without default) is an error unless the receiving component input is optional
  (``resolveInputs``).
- resolve.go, ``resolveInputParameterStr`` (used for image pull secret names in
  backend/src/v2/driver/k8s.go, ``extendPodSpecPatch``): an empty string is an error.
- resolve.go, ``resolveK8sJsonParameter`` (node selector JSON): reads ``GetStructValue()``.
- k8s.go, ``extendPodSpecPatch``: ``activeDeadlineSeconds`` > 0 becomes the pod's deadline;
  ``emptyDirMounts`` become volumes; secrets are ``optional`` only when the spec says so.

``test_rules_catch_the_yaml_before_cluster_fixes`` runs the same checks on the package as it was
committed at 9c0bb51 (tests/integration/data/), which a cluster would have run without GPUs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from support import ROOT

PACKAGE = ROOT / "pipelines" / "newsrnn_pipeline.yaml"
BEFORE = Path(__file__).parent / "data" / "newsrnn_pipeline_9c0bb51.yaml"
GPU_TASKS = ("tune", "train")
# Tasks that call a server (MLflow, Optuna's RDB, a DVC remote, the registry) or hold a GPU node.
OUTSIDE = ("fetch", "tracking-setup", "tune-plan", "tune", "tune-finalize", "train", "evaluate", "ensemble",
           "register")
CHANNEL = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
LOCAL_STORE = re.compile(r"(^|[\"'\s=])(sqlite:|file:|journal:)|//(localhost|127\.\d+\.\d+\.\d+|\[::1\])[:/]|"
                         r"^(/|\./|\.\./|~)")
RESOURCE_FIELDS = ("resourceCpuLimit", "resourceCpuRequest", "resourceMemoryLimit", "resourceMemoryRequest")


def _load(path: Path) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}


def _dags(spec: dict) -> dict[str, tuple[dict, dict]]:
    """DAG name -> (its tasks, its input parameter definitions); the root is ''."""
    out = {"": (spec["root"]["dag"]["tasks"], spec["root"].get("inputDefinitions", {}).get("parameters", {}))}
    for name, comp in spec["components"].items():
        if "dag" in comp:
            out[name] = (comp["dag"]["tasks"], comp.get("inputDefinitions", {}).get("parameters", {}))
    return out


def _source_type(spec: dict, src: dict, parent_inputs: dict) -> str:
    """The parameter type a task input resolves to at run time."""
    if "componentInputParameter" in src:
        declared = parent_inputs.get(src["componentInputParameter"], {})
        if "parameterExpressionSelector" in src:
            return "STRING"  # a loop item's field, read out of JSON: typed by the item, checked at run time
        return declared.get("parameterType", "MISSING")
    if "runtimeValue" in src:
        value = src["runtimeValue"].get("constant")
        return "STRING" if isinstance(value, str) else "NUMBER"
    if "taskOutputParameter" in src:
        return "STRING?"  # not used for resources here
    return "UNKNOWN"


def violations(path: Path, readme: str) -> list[str]:
    """Every backend rule the package at ``path`` breaks, one line each."""
    spec, k8s = _load(path)
    executors = spec["deploymentSpec"]["executors"]
    found: list[str] = []
    root_params = spec["root"]["inputDefinitions"]["parameters"]
    for dag_name, (tasks, inputs) in _dags(spec).items():
        for tname, task in tasks.items():
            comp = spec["components"][task["componentRef"]["name"]]
            comp_inputs = comp.get("inputDefinitions", {}).get("parameters", {})
            params = task.get("inputs", {}).get("parameters", {})
            for pname, src in params.items():
                # resolveInputParameter: the parent DAG must declare what a task reads from it.
                ref = src.get("componentInputParameter")
                if ref is not None and ref not in inputs:
                    found.append(f"{tname}.{pname}: reads {ref}, which its DAG {dag_name or 'root'} does not declare")
                # resolveInputs: a null (optional, no default) reaching a required input fails.
                if dag_name == "" and ref in root_params and root_params[ref].get("isOptional") \
                        and "defaultValue" not in root_params[ref] and not comp_inputs.get(pname, {}).get("isOptional"):
                    found.append(f"{tname}.{pname}: null pipeline parameter {ref} reaches a required input")
                # A compiler-injected placeholder input must not share a name with a real input.
                const = src.get("runtimeValue", {}).get("constant")
                if isinstance(const, str) and CHANNEL.match(const) and pname in comp_inputs:
                    found.append(f"{tname}.{pname}: the component's own input collides with the compiler's "
                                 "resource placeholder of that name")
            if "executorLabel" not in comp:
                continue
            container = executors[comp["executorLabel"]]["container"]
            res = container.get("resources", {})
            fields = {f: res[f] for f in RESOURCE_FIELDS if f in res}
            acc = res.get("accelerator", {})
            fields.update({f"accelerator.{f}": acc[f] for f in ("resourceType", "resourceCount") if f in acc})
            fields["image"] = container["image"]
            for field, value in fields.items():
                m = CHANNEL.match(str(value))
                if not m:
                    continue
                kind = _source_type(spec, params.get(m.group(1), {}), inputs) if m.group(1) in params else "MISSING"
                if kind != "STRING":
                    found.append(f"{tname}: {field} reads parameter {m.group(1)} of type {kind}; the driver "
                                 "reads it with GetStringValue(), so it must be STRING")
            if tname in GPU_TASKS and not ((acc.get("resourceType") or acc.get("type"))
                                           and (acc.get("resourceCount") or acc.get("count"))):
                found.append(f"{tname}: no GPU limit (accelerator type and count)")
            kcfg = k8s.get(comp["executorLabel"], {})
            if int(kcfg.get("activeDeadlineSeconds", 0)) <= 0:
                found.append(f"{tname}: no timeout (activeDeadlineSeconds)")
            if tname in GPU_TASKS and not any(m.get("mountPath") == "/dev/shm" and m.get("medium") == "Memory"
                                              for m in kcfg.get("emptyDirMounts", [])):
                found.append(f"{tname}: no memory-backed /dev/shm for multi-GPU training")
            if tname in OUTSIDE and int(task.get("retryPolicy", {}).get("maxRetryCount", 0)) < 1:
                found.append(f"{tname}: talks to an outside service but has no retries")
            for sel in (kcfg.get("nodeSelector", {}).get("nodeSelectorJson", {}),):
                ref = sel.get("componentInputParameter")
                if ref and inputs.get(ref, {}).get("parameterType") != "STRUCT":
                    found.append(f"{tname}: node selector reads {ref}, not a STRUCT parameter")
            for pull in kcfg.get("imagePullSecret", []):
                ref = pull.get("secretNameParameter", {}).get("componentInputParameter", "")
                root_ref = ref.removeprefix("pipelinechannel--")
                if ref and root_params.get(root_ref, {}).get("defaultValue", "") == "":
                    found.append(f"{tname}: image pull secret {root_ref} may be empty, which the driver refuses")
            for kind in ("secretAsEnv", "secretAsVolume"):
                for sec in kcfg.get(kind, []):
                    ref = sec.get("secretNameParameter", {}).get("componentInputParameter", "")
                    name = root_params.get(ref.removeprefix("pipelinechannel--"), {}).get("defaultValue") \
                        or sec.get("secretName", "")
                    if not sec.get("optional") and name not in readme:
                        found.append(f"{tname}: secret {name or ref} is required and not documented in README.md")
    for name, ex in executors.items():
        image = ex["container"]["image"]
        tail = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in tail or tail.endswith(":latest")):
            found.append(f"{name}: image {image} is neither pinned by digest nor by an explicit tag")
        for env in ex["container"].get("env", []):
            if re.search(r"sqlite:|file:|journal:|//(localhost|127\.)", str(env.get("value", ""))):
                found.append(f"{name}: env {env['name']}={env['value']} points at a local store")
    # What the cluster receives: every default a run starts from, params_json read as JSON.
    defaults = [(f"root.{k}", v["defaultValue"]) for k, v in root_params.items() if "defaultValue" in v]
    for cname, comp in spec["components"].items():
        for k, v in comp.get("inputDefinitions", {}).get("parameters", {}).items():
            if "defaultValue" in v:
                defaults.append((f"{cname}.{k}", v["defaultValue"]))
    for where, value in defaults:
        for key, leaf in _leaves(value, where):
            if isinstance(leaf, str) and LOCAL_STORE.search(leaf):
                found.append(f"{key}: default {leaf!r} points at a local store")
    for tname, task in _all_tasks(spec).items():
        if "parameterIterator" in task and int(task.get("iteratorPolicy", {}).get("parallelismLimit", 0)) <= 0:
            found.append(f"{tname}: fan-out without parallelism")
    return found


def _leaves(value: object, key: str) -> list[tuple[str, object]]:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _leaves(v, f"{key}.{k}")]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _leaves(v, f"{key}[{i}]")]
    return [(key, value)]


def _all_tasks(spec: dict) -> dict[str, dict]:
    return {name: task for tasks, _ in _dags(spec).values() for name, task in tasks.items()}


def test_compiled_package_follows_the_backend_rules() -> None:
    """The committed YAML (kept current by test_kfp.py::test_committed_package_is_current)."""
    problems = violations(PACKAGE, (ROOT / "README.md").read_text())
    assert not problems, "\n".join(problems)


def test_rules_catch_the_yaml_before_cluster_fixes() -> None:
    """The package of 9c0bb51 requested no GPU on a cluster, logged to SQLite, had no timeouts."""
    problems = "\n".join(violations(BEFORE, (ROOT / "README.md").read_text()))
    assert "accelerator.resourceCount reads parameter pipelinechannel--accelerator_limit of type NUMBER_INTEGER" \
        in problems
    assert "accelerator_type: the component's own input collides" in problems
    assert "sqlite:///mlflow.db" in problems
    assert "no timeout" in problems and "no memory-backed /dev/shm" in problems
    assert "tune-plan: talks to an outside service but has no retries" in problems
    assert "fan-out without parallelism" in problems


def test_gpu_parameters_are_strings_and_reach_the_loops() -> None:
    spec, _ = _load(PACKAGE)
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert root["gpu_type"]["parameterType"] == root["gpu_count"]["parameterType"] == "STRING"
    assert root["gpu_node_selector"]["parameterType"] == "STRUCT"
    for comp in ("comp-for-loop-1", "comp-for-loop-2"):
        declared = spec["components"][comp]["inputDefinitions"]["parameters"]
        assert {"pipelinechannel--gpu_type", "pipelinechannel--gpu_count"} <= set(declared), comp


def test_experiment_is_created_before_the_fan_out() -> None:
    """Parallel pods must not race to create the MLflow experiment: tracking-setup runs first."""
    spec, _ = _load(PACKAGE)
    root = spec["root"]["dag"]["tasks"]
    loop = next(t for t in root.values() if "parameterIterator" in t)
    assert "tracking-setup" in loop["dependentTasks"]
    assert "ensure_experiment" in " ".join(
        spec["deploymentSpec"]["executors"]["exec-tracking-setup"]["container"]["command"])


def test_every_tracked_task_learns_its_kubeflow_run_id() -> None:
    """Each executor that gets the MLflow secret also gets NEWSRNN_KFP_RUN_ID from the pod label
    the backend sets on every pod of a run (``LabelKeyWorkflowRunId`` = ``pipeline/runid``,
    backend/src/common/util/consts.go), which tracking writes as the runs' ``kfp_run_id`` tag."""
    _, executors = _load(PACKAGE)
    tracked = {name: ex for name, ex in executors.items()
               if any(s.get("secretName") == "newsrnn-mlflow" or "mlflow" in json.dumps(s)
                      for s in ex.get("secretAsEnv", []))}
    assert {"exec-train", "exec-evaluate", "exec-register", "exec-ensemble"} <= set(tracked)
    for name, ex in tracked.items():
        assert {"name": "NEWSRNN_KFP_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"} in \
            ex.get("fieldPathAsEnv", []), name
