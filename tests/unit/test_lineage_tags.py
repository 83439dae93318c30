"""Lineage tags come from git, dvc.lock and the variables `dvc exp run` and the pipeline set."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from newsrnn.tracking import EXPERIMENT_KIND_TAG, VIEW_TAG, lineage_tags, mark_training_experiment, set_experiment


def _repo(path: Path) -> str:
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "test"]):
        subprocess.run(cmd, cwd=path, check=True)
    (path / "dvc.yaml").write_text("stages: {}\n")
    (path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"prepare": {
        "cmd": "newsrnn prepare", "outs": [{"path": "data/prepared", "md5": "0123abcd.dir", "size": 1}]}}}))
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()


def test_tags_name_code_data_dvc_experiment_and_kubeflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = _repo(tmp_path)
    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/summary.json").write_text(json.dumps({"data_sha256": "ab" * 32}))
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "NEWSRNN_KFP_RUN_ID", "KFP_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    plain = lineage_tags(tmp_path)
    assert plain == {"git_commit": commit, "git_dirty": "false", "dvc_rev": commit,
                     "dvc_data_md5": "0123abcd.dir", "data_sha256": "ab" * 32}
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-tops")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", commit)
    monkeypatch.setenv("KFP_RUN_ID", "run-from-label")
    monkeypatch.setenv("NEWSRNN_KFP_RUN_ID", "run-from-pipeline")
    (tmp_path / "dvc.yaml").write_text("stages: {x: {cmd: echo}}\n")
    tags = lineage_tags(tmp_path)
    assert tags["dvc_exp_name"] == "bushy-tops" and tags["dvc_exp_baseline"] == commit
    assert tags["kfp_run_id"] == "run-from-pipeline" and tags["git_dirty"] == "true"


def test_outside_a_repository_only_what_is_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "NEWSRNN_KFP_RUN_ID", "KFP_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert lineage_tags(tmp_path) == {"git_commit": "unknown"}


def test_training_experiment_kind_and_view_set_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = set_experiment("newsrnn")
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ  # not leaked to later subprocesses
    client = MlflowClient(uri)
    mark_training_experiment(client, exp.experiment_id)
    tags = client.get_experiment(exp.experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    view = json.loads(tags[VIEW_TAG])
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`val_accuracy`" and state["orderByAsc"] is False
    assert "metrics.`val_accuracy`" in state["selectedColumns"]
    mark_training_experiment(client, exp.experiment_id)  # unchanged view: not rewritten
    assert json.loads(client.get_experiment(exp.experiment_id).tags[VIEW_TAG])["createdAt"] == view["createdAt"]
