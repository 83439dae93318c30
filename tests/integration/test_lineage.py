"""`newsrnn lineage`: data -> code -> params -> run -> version -> alias, from either end, in one hop."""

from __future__ import annotations

import json
import subprocess

import pytest
from store import DVC_EXP_NAME, KFP_RUN_ID

from newsrnn.lineage import LineageError, chain
from newsrnn.tracking import git_commit


def _by_link(links: list[dict]) -> dict[str, dict]:
    return {x["link"]: x for x in links}


@pytest.mark.slow
def test_lineage_from_alias_version_and_run_agree(pipeline_store: dict) -> None:
    from mlflow import MlflowClient

    root, cfg, uri = pipeline_store["root"], pipeline_store["cfg"], pipeline_store["uri"]
    champion = json.loads((root / "artifacts/champion.json").read_text())
    run_id = json.loads((root / "metrics" / f"{champion['arch']}.json").read_text())["run_id"]
    version = str(champion["version"])

    # The registered version carries the lineage itself (no need to open the run).
    tags = MlflowClient(uri).get_model_version("agnews-rnn", version).tags
    assert tags["run_id"] == run_id and tags["git_commit"] == git_commit()
    assert tags["dvc_exp_name"] == DVC_EXP_NAME and tags["kfp_run_id"] == KFP_RUN_ID
    assert tags["data_sha256"] == champion["data_sha256"]

    views = [chain(cfg, ref) for ref in (None, "models:/agnews-rnn@champion", f"models:/agnews-rnn/{version}",
                                         version, run_id)]
    for links in views:
        assert [x["link"] for x in links] == ["data", "code", "params", "run", "version", "alias"]
        got = _by_link(links)
        assert champion["data_sha256"] in got["data"]["value"]
        assert any("sha256" in d and "training" in d for d in got["data"]["details"])
        assert git_commit() in got["code"]["value"] and "git show" in got["code"]["where"]
        assert DVC_EXP_NAME in got["params"]["value"]
        assert got["params"]["details"] and f"arch.name = {champion['arch']}" in got["params"]["details"]
        assert run_id in got["run"]["value"] and KFP_RUN_ID in got["run"]["where"]
        assert got["version"]["value"] == f"agnews-rnn v{version}"
        assert got["alias"]["value"] == f"@champion -> v{version} (this version)"
    # A run that was never registered says so.
    other = next(json.loads((root / "metrics" / f"{a}.json").read_text())["run_id"]
                 for a in ("rnn_title", "gru", "wide") if a != champion["arch"])
    assert _by_link(chain(cfg, other))["version"]["value"] == "not registered"
    with pytest.raises(LineageError, match="not found"):
        chain(cfg, "models:/agnews-rnn/99")


@pytest.mark.slow
def test_lineage_command_prints_the_chain_and_one_line_errors(pipeline_store: dict) -> None:
    root = pipeline_store["root"]
    out = subprocess.run(["newsrnn", "lineage"], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    firsts = [line.split()[0] for line in out.stdout.splitlines() if line and not line.startswith(" ")]
    assert firsts == ["data", "code", "params", "run", "version", "alias"], out.stdout
    assert KFP_RUN_ID in out.stdout and "#/models/agnews-rnn/versions/" in out.stdout
    as_json = subprocess.run(["newsrnn", "lineage", "--json", "1"], cwd=root, capture_output=True, text=True,
                             timeout=120)
    assert json.loads(as_json.stdout)[4]["value"] == "agnews-rnn v1"
    bad = subprocess.run(["newsrnn", "lineage", "models:/agnews-rnn/42"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("newsrnn lineage: error:")]
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(errors) == 1 and "not found" in errors[0], bad.stderr
