"""Kubeflow: the compiled pipeline, a real kfp local run, and fetching DVC-versioned data.

No mocks: the local run uses kfp's SubprocessRunner with this interpreter, MLflow on a SQLite
file, Optuna on a journal file; the DVC test uses a real git repo and a local DVC remote.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from support import ROOT, small_params
from synthetic import write_corpus

PACKAGE = ROOT / "pipelines" / "newsrnn_pipeline.yaml"
STAGES = ("fetch", "prepare", "vectorize", "tune", "train", "evaluate", "register")
GPU_STAGES = ("tune", "train")


def _spec(path: Path) -> tuple[dict, dict]:
    """(pipeline spec, Kubernetes platform spec) of a compiled package."""
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task in every DAG of the spec, by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline compiled now from the repo's params.yaml."""
    from newsrnn.config import load_config
    from newsrnn.kfp_cli import compile_pipeline

    return compile_pipeline(load_config(ROOT / "params.yaml"),
                            tmp_path_factory.mktemp("kfp") / "newsrnn_pipeline.yaml")


def test_committed_package_is_current(compiled: Path) -> None:
    """`newsrnn kfp compile` output equals the committed YAML (else: re-run compile and commit)."""
    assert PACKAGE.exists(), "pipelines/newsrnn_pipeline.yaml is missing: run `newsrnn kfp compile`"
    assert compiled.read_text() == PACKAGE.read_text(), (
        "pipelines/newsrnn_pipeline.yaml is stale: run `newsrnn kfp compile` and commit the result")


def test_one_component_per_stage_with_explicit_image(compiled: Path) -> None:
    spec, _ = _spec(compiled)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    for stage in STAGES:
        assert f"exec-{stage}" in executors, f"no component for stage {stage}"
    for name, ex in executors.items():
        container = ex["container"]
        assert container["image"] == params["kfp"]["base_image"], name
        command = " ".join(container.get("command", []) + container.get("args", []))
        assert "pip install" not in command, f"{name} installs packages at run time"
        res = container.get("resources", {})
        for key in ("cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"):
            assert key in res, f"{name} has no {key}"
    # Each stage's component calls its library function, not its own logic.
    for stage, call in (("fetch", "newsrnn.fetch"), ("prepare", "newsrnn.prepare"),
                        ("vectorize", "newsrnn.vectorize"), ("tune", "run_worker"),
                        ("train", "newsrnn.train"), ("evaluate", "newsrnn.evaluate"),
                        ("register", "newsrnn.register")):
        assert call in " ".join(executors[f"exec-{stage}"]["container"]["command"]), stage


def test_gpu_retries_and_secrets(compiled: Path) -> None:
    spec, platform = _spec(compiled)
    executors = spec["deploymentSpec"]["executors"]
    tasks = _tasks(spec)
    for stage in GPU_STAGES:
        acc = executors[f"exec-{stage}"]["container"]["resources"]["accelerator"]
        assert "gpu_type" in acc["resourceType"] and "gpu_count" in acc["resourceCount"]
        retry = tasks[stage]["retryPolicy"]
        assert retry["maxRetryCount"] >= 1 and retry["backoffDuration"] and retry["backoffFactor"] > 1
    for stage in ("fetch", "prepare", "vectorize", "evaluate", "register"):
        assert "accelerator" not in executors[f"exec-{stage}"]["container"]["resources"], stage
    root_params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("gpu_type", "gpu_count", "gpu_node_selector", "image_pull_secret", "tune_workers", "params_json",
                 "data_version"):
        assert name in root_params
    # Credentials reach tasks only through secrets, never as parameter values.
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for stage in ("tune-finalize", "train", "evaluate", "register"):
        envs = {e["envVar"] for s in k8s[f"exec-{stage}"]["secretAsEnv"] for e in s["keyToEnv"]}
        assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"} <= envs, stage
    assert any(e["envVar"] == "NEWSRNN_OPTUNA_STORAGE"
               for s in k8s["exec-tune"]["secretAsEnv"] for e in s["keyToEnv"])
    for stage in GPU_STAGES:
        assert k8s[f"exec-{stage}"]["tolerations"], stage
    defaults = json.dumps({k: v.get("defaultValue") for k, v in root_params.items()}).lower()
    assert "password" not in defaults


def test_fan_out_fan_in_and_caching(compiled: Path) -> None:
    spec, _ = _spec(compiled)
    tasks = _tasks(spec)
    loops = {name: t for name, t in tasks.items() if "parameterIterator" in t}
    assert len(loops) == 2, "expected ParallelFor over architectures and, nested, over workers"
    outer_name = next(n for n in loops if n in spec["root"]["dag"]["tasks"])
    outer = spec["root"]["dag"]["tasks"][outer_name]
    assert outer["taskInfo"]["name"] == "architectures"
    inner_comp = spec["components"][outer["componentRef"]["name"]]["dag"]["tasks"]
    assert any("parameterIterator" in t for t in inner_comp.values()), "worker loop is not nested"
    # register collects every architecture's metrics and model from the loop (dsl.Collected), plus
    # the ensemble, which collects the models too.
    reg = tasks["register"]["inputs"]["artifacts"]
    producers = {name: a["taskOutputArtifact"]["producerTask"] for name, a in reg.items()}
    assert producers == {"metrics": outer_name, "models": outer_name, "ensemble_metrics": "ensemble",
                         "ensemble_model": "ensemble"}
    ens = tasks["ensemble"]["inputs"]["artifacts"]
    assert ens["models"]["taskOutputArtifact"]["producerTask"] == outer_name
    fin = tasks["tune-finalize"]["inputs"]["parameters"]["trials_run"]
    assert "taskOutputParameter" in fin  # the workers' collected counts
    # The data version is part of fetch's cache key; live-state steps are never cached.
    assert "data_version" in tasks["fetch"]["inputs"]["parameters"]
    assert tasks["fetch"]["cachingOptions"].get("enableCache") is True
    for name in ("tune-plan", "register"):
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    # params.yaml is the default of the single params parameter (minus the laptop's SQLite URI).
    from newsrnn.config import config_to_dict, load_config

    default = json.loads(spec["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"])
    expected = config_to_dict(load_config(ROOT / "params.yaml"))
    expected["mlflow"]["tracking_uri"] = ""
    assert default == expected


def test_submit_arguments_are_checked(compiled: Path) -> None:
    """`submit --arg` is typed from the package and refuses credentials in URLs."""
    from newsrnn.config import load_config
    from newsrnn.errors import KfpError
    from newsrnn.kfp_cli import _declared_parameters, run_arguments

    cfg = load_config(ROOT / "params.yaml")
    declared = _declared_parameters(compiled)
    args = run_arguments(cfg, declared, ["tune_workers=4", "dvc_rev=", "gpu_type=nvidia.com/gpu", "gpu_count=2"])
    assert args["gpu_count"] == "2"
    assert args["tune_workers"] == 4 and args["data_version"].startswith("date:")
    assert json.loads(args["params_json"])["seed"] == cfg.seed
    with pytest.raises(KfpError, match="not a pipeline parameter"):
        run_arguments(cfg, declared, ["epochs=3"])
    with pytest.raises(KfpError, match="NUMBER_INTEGER"):
        run_arguments(cfg, declared, ["tune_workers=two"])
    with pytest.raises(KfpError, match="password"):
        run_arguments(cfg, declared, ["optuna_storage=postgresql://u:secret@db:5432/optuna"])


def _task_inputs(params: dict) -> dict[str, str]:
    """What each task receives as its config at run time, for these params.

    Runs the ``architectures`` and ``stage_configs`` components' own functions (the tasks that cut
    the params), then
    follows the compiled YAML: every task's ``stage_params`` input is wired to one of its outputs
    (directly, or through the architecture loop's item, or the tuning loop's item, which
    ``tune_plan`` fills with its own input). Keys are ``task`` or ``task@arch``.
    """
    from newsrnn.config import load_config
    from newsrnn.kfp_cli import load_pipeline

    load_pipeline(load_config(ROOT / "params.yaml").kfp.base_image)
    from components import architectures, stage_configs

    items = architectures.python_func(params_json=json.dumps(params))
    single = stage_configs.python_func(params_json=json.dumps(params))
    spec, _ = _spec(PACKAGE)
    tasks = _tasks(spec)
    got: dict[str, str] = {}
    for name, task in tasks.items():
        src = task.get("inputs", {}).get("parameters", {}).get("stage_params")
        if src is None:
            continue
        if "taskOutputParameter" in src:
            assert src["taskOutputParameter"]["producerTask"] == "stage-configs", name
            got[name] = getattr(single, src["taskOutputParameter"]["outputParameterKey"])
            continue
        field = re.search(r'\["(\w+)"\]', src["parameterExpressionSelector"]).group(1)
        loop = src["componentInputParameter"]
        for item in items:
            # The tuning loop's item carries tune_plan's stage_params, i.e. the arch item's "tune".
            value = item["tune"] if "tune-plan" in loop and field == "params" else item[field]
            got[f"{name}@{item['arch']}"] = value
    return got


def test_each_task_gets_only_what_it_reads() -> None:
    """Like `dvc repro`: gru's units re-run gru's tasks only; train.epochs never re-runs the data steps."""
    base = small_params(**{"models": ["rnn", "gru"]})
    before = _task_inputs(base)
    assert {"fetch", "prepare", "vectorize", "train@gru", "tune@gru", "evaluate@rnn", "register"} <= set(before)

    units = copy.deepcopy(base)
    units["architectures"]["gru"]["units"] += 1
    changed = {k for k, v in _task_inputs(units).items() if before[k] != v}
    assert changed == {"tune-plan@gru", "tune@gru", "tune-finalize@gru", "train@gru"}, changed

    epochs = copy.deepcopy(base)
    epochs["train"]["epochs"] += 1
    changed = {k for k, v in _task_inputs(epochs).items() if before[k] != v}
    assert not changed & {"fetch", "prepare", "vectorize", "tracking-setup", "register", "ensemble"}, changed
    assert {"train@gru", "train@rnn"} <= changed
    assert not any(k.startswith("evaluate@") for k in changed), changed


def test_tracking_setup_fails_on_a_local_store_in_kubeflow(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The task before the fan-out, run as a kfp task with the cluster's rules on: the laptop's
    SQLite default is refused in one line naming the secret, before any GPU task starts."""
    from kfp import local

    from newsrnn.config import config_from_dict, load_config, stage_params
    from newsrnn.kfp_cli import load_pipeline

    load_pipeline(load_config(ROOT / "params.yaml").kfp.base_image)
    from components import tracking_setup

    monkeypatch.setenv("NEWSRNN_CLUSTER", "1")
    monkeypatch.chdir(tmp_path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    cut = stage_params(config_from_dict(small_params()), "tracking")
    cut["mlflow"]["tracking_uri"] = "sqlite:///mlflow.db"
    with pytest.raises(RuntimeError):
        tracking_setup(stage_params=json.dumps(cut))
    err = capfd.readouterr()
    lines = [ln for ln in (err.out + err.err).splitlines() if "ClusterConfigError:" in ln]
    assert lines and "newsrnn-mlflow" in lines[-1] and "sqlite:///mlflow.db" in lines[-1], err.out[-3000:]
    assert not list(tmp_path.rglob("mlflow.db"))


# --- DVC-versioned data -------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _dvc(repo: Path, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, check=True,
                   capture_output=True, text=True)


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A git repo whose data/raw is DVC-tracked, pushed to a local remote, at tags v1 and v2.

    The local cache is deleted afterwards, so reading a revision must go to the remote.
    """
    from newsrnn.config import config_from_dict
    from newsrnn.fetch import fetch

    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "test")
    _dvc(repo, "init", "-q")
    _dvc(repo, "remote", "add", "-d", "store", str(remote))
    for tag, (n_train, seed) in (("v1", (200, 0)), ("v2", (240, 7))):
        corpus = write_corpus(tmp_path / f"corpus_{tag}", n_train, 60, seed=seed)
        cfg = config_from_dict(small_params(**{"data.sources": ["local"], "data.local_dir": str(corpus)}))
        fetch(cfg.data, repo / "data" / "raw", tmp_path / "download")
        _dvc(repo, "add", "-q", "data/raw")
        _dvc(repo, "push", "-q")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", f"data {tag}")
        _git(repo, "tag", tag)
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "raw")
    return repo


def test_fetch_component_reads_dvc_revisions(dvc_repo: Path, tmp_path: Path) -> None:
    """The fetch component, run by kfp's local runner, reads each tag's data from the DVC remote."""
    from kfp import local

    from newsrnn.config import load_config, stage_params
    from newsrnn.fetch import data_sha256
    from newsrnn.kfp_cli import data_version, load_pipeline

    cfg = load_config(ROOT / "params.yaml")
    load_pipeline(cfg.kfp.base_image)
    from components import fetch

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    seen = {}
    for rev, n_train in (("v1", 200), ("v2", 240)):
        version = data_version(cfg, str(dvc_repo), rev)
        assert version == "git:" + _git(dvc_repo, "rev-parse", f"{rev}^{{commit}}").strip()
        task = fetch(stage_params=json.dumps(stage_params(cfg, "fetch")), data_version=version, dvc_repo=str(dvc_repo),
                     dvc_rev=rev)
        raw = Path(task.outputs["raw"].path)
        assert len(pd.read_parquet(raw / "train.parquet")) == n_train
        assert json.loads((raw / "source.json").read_text())["rows"]["train"] == n_train
        assert task.outputs["Output"] == data_sha256(raw)
        seen[rev] = task.outputs["Output"]
    assert seen["v1"] != seen["v2"]


def test_fetch_dvc_names_a_missing_revision(dvc_repo: Path, tmp_path: Path) -> None:
    from newsrnn.dvcdata import fetch_dvc
    from newsrnn.errors import DvcDataError

    with pytest.raises(DvcDataError, match="v9"):
        fetch_dvc(str(dvc_repo), tmp_path / "out", rev="v9")
    assert not (tmp_path / "out").exists(), "a failed fetch must leave no partial output"


# --- the whole pipeline, locally ----------------------------------------------------------

@pytest.mark.slow
def test_run_local_registers_champion(tmp_path: Path) -> None:
    """`newsrnn kfp run-local`: 2 architectures x 2 tuning workers, 2 trials, 1 epoch each, and
    their ensemble (a word RNN and the char n-gram model: an ensemble of two parts)."""
    import mlflow

    corpus = write_corpus(tmp_path / "ag_news_csv", 400, 120)
    params = small_params(**{"models": ["rnn", "wide_char"], "ensemble": ["rnn", "wide_char"], "tune.n_trials": 2,
                             "kfp.tune_workers": 2, "data.sources": ["local"], "data.local_dir": str(corpus)})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NEWSRNN_OPTUNA_STORAGE",
                                                             "NEWSRNN_DATA_DIR")}
    out = subprocess.run([str(Path(sys.executable).parent / "newsrnn"), "kfp", "run-local",
                          "--pipeline-root", "kfp_local"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("newsrnn")
    runs = client.search_runs([exp.experiment_id])
    names = [r.info.run_name for r in runs]
    for arch in ("rnn", "wide_char"):
        assert arch in names and f"tune-{arch}" in names, names
    assert sum(n.startswith("trial-") for n in names) == 4, names  # 2 trials x 2 architectures
    train_runs = [r for r in runs if r.data.tags.get("stage") == "train"]
    assert all("val_accuracy" in r.data.metrics for r in train_runs), "evaluate did not log to the runs"
    ens = [r for r in runs if r.data.tags.get("stage") == "ensemble"]
    assert len(ens) == 1 and "val_accuracy" in ens[0].data.metrics, "the ensemble was not built and scored"
    assert ens[0].data.params["members"] == "rnn,wide_char"
    champion = client.get_model_version_by_alias("agnews-rnn", "champion")
    assert champion.tags["arch"] in ("rnn", "wide_char", "ensemble")
    # Both studies ran their full budget, split over the two workers.
    journal = tmp_path / "kfp_local" / "optuna.journal"
    assert journal.exists() and journal.stat().st_size > 0
