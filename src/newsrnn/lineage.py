"""``newsrnn lineage``: from a run, a registered version or an alias to everything it came from.

Prints the chain data -> code -> params -> run -> version -> alias, each with the command or
page where a person finds it. It reads only the MLflow store: the run's lineage tags (written
by ``tracking.lineage_tags`` when the run started), its dataset inputs (logged by evaluate) and
the version's tags (copied from the run by register). Both directions are one hop: a version
names its run (``run_id`` tag), a run's versions are found by that tag.
"""

from __future__ import annotations

import json
import re
from typing import Any

from newsrnn.config import Config
from newsrnn.register import ALIAS, RegisterError


class LineageError(RegisterError):
    """The reference names no run, version or alias in this store."""


def _ui(uri: str, fragment: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/{fragment}"
    return f"`mlflow ui --backend-store-uri {uri}`, then #/{fragment}"


def resolve(client: Any, name: str, ref: str | None) -> tuple[Any | None, Any | None]:
    """(run, model version) for ``ref``: run id, ``models:/n@alias``, ``models:/n/v``, ``v3`` or ``3``."""
    import mlflow

    ref = ref or f"models:/{name}@{ALIAS}"
    try:
        if m := re.fullmatch(r"models:/([^/@]+)@(.+)", ref):
            version = client.get_model_version_by_alias(m[1], m[2])
        elif m := re.fullmatch(r"models:/([^/@]+)/(\d+)", ref):
            version = client.get_model_version(m[1], m[2])
        elif m := re.fullmatch(r"v?(\d+)", ref):
            version = client.get_model_version(name, m[1])
        else:
            run = client.get_run(ref)
            versions = [v for v in client.search_model_versions(f"name='{name}'")
                        if v.tags.get("run_id") == ref or v.run_id == ref]
            return run, (max(versions, key=lambda v: int(v.version)) if versions else None)
    except mlflow.exceptions.MlflowException as exc:
        raise LineageError(f"{ref}: not found in the MLflow store ({str(exc)[:160]}); give a run id, "
                           f"models:/{name}@{ALIAS}, models:/{name}/<version> or a version number") from None
    run_id = version.tags.get("run_id") or version.run_id
    run = None
    if run_id:
        try:
            run = client.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            run = None
    return run, version


def chain(cfg: Config, ref: str | None = None) -> list[dict[str, Any]]:
    """The lineage as a list of links: {"link", "value", "details", "where"}."""
    from mlflow import MlflowClient

    from newsrnn.tracking import use_tracking_uri

    uri = cfg.tracking_uri()
    use_tracking_uri(uri)
    client = MlflowClient(uri)
    name = cfg.mlflow.registered_model
    run, version = resolve(client, name, ref)
    tags = {**(version.tags if version is not None else {}), **(run.data.tags if run is not None else {})}
    commit = tags.get("git_commit", "unknown")
    links = []
    datasets = []
    if run is not None:
        for di in run.inputs.dataset_inputs:
            t = {x.key: x.value for x in di.tags}
            datasets.append(f"{t.get('mlflow.data.context', '?')}: {di.dataset.name} sha256 {t.get('sha256', '?')} "
                            f"({t.get('rows', '?')} rows, from {t.get('origin', '?')})")
    rev = tags.get("dvc_rev")
    links.append({"link": "data", "value": f"sha256 {tags.get('data_sha256', 'unknown')}",
                  "details": ([f"DVC: data/prepared md5 {tags['dvc_data_md5']}"] if tags.get("dvc_data_md5") else [])
                  + datasets,
                  "where": (f"`git checkout {rev} && dvc checkout data/prepared` (data/raw/source.json says where "
                            "the corpus came from)") if rev else "data/raw/source.json of the run's checkout"})
    dirty = " (uncommitted changes)" if tags.get("git_dirty") == "true" else ""
    known = commit != "unknown"
    links.append({"link": "code", "value": f"git {commit}{dirty}", "details": [],
                  "where": f"`git show {commit}`" if known else "not run from a git checkout"})
    params = dict(run.data.params) if run is not None else {}
    shown = {k: params[k] for k in ("arch.name", "members", "learning_rate_effective", "batch_size_effective",
                                    "train.epochs", "tuned") if k in params}
    exp_name = tags.get("dvc_exp_name")
    links.append({"link": "params", "value": f"{len(params)} params on the run"
                  + (f"; DVC experiment {exp_name}" if exp_name else ""),
                  "details": [f"{k} = {v}" for k, v in shown.items()],
                  "where": (f"`dvc exp show` (experiment {exp_name})" if exp_name
                            else f"params.yaml and artifacts/tuned/ at git {commit}" if known
                            else "the run's params in the MLflow UI")})
    if run is not None:
        kfp = tags.get("kfp_run_id")
        links.append({"link": "run", "value": f"{run.info.run_id} ({tags.get('arch', run.info.run_name)}, "
                      f"{run.info.status})",
                      "details": [f"Kubeflow run {kfp}"] if kfp else [],
                      "where": _ui(uri, f"experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
                      + (f"; Kubeflow UI: run {kfp}" if kfp else "")})
    else:
        links.append({"link": "run", "value": "not found in this store", "details": [], "where": "-"})
    if version is not None:
        links.append({"link": "version", "value": f"{version.name} v{version.version}",
                      "details": [f"promotion: {version.tags.get('promotion', '-')}: "
                                  f"{version.tags.get('promotion_reason', '-')}"],
                      "where": _ui(uri, f"models/{version.name}/versions/{version.version}")})
        try:
            holder = client.get_model_version_by_alias(version.name, ALIAS)
            here = str(holder.version) == str(version.version)
            alias = f"@{ALIAS} -> v{holder.version}" + (" (this version)" if here else " (another version)")
        except Exception:  # no alias set yet
            alias = f"@{ALIAS} is not set"
        links.append({"link": "alias", "value": alias, "details": [],
                      "where": f"`newsrnn predict --model models:/{version.name}@{ALIAS} ...`"})
    else:
        links.append({"link": "version", "value": "not registered", "details": [], "where": "`newsrnn register`"})
    return links


def lineage(cfg: Config, ref: str | None = None, as_json: bool = False) -> str:
    """The chain for ``ref`` as text (or JSON)."""
    links = chain(cfg, ref)
    if as_json:
        return json.dumps(links, indent=2)
    lines = []
    for link in links:
        lines.append(f"{link['link']:<8} {link['value']}")
        lines.extend(f"{'':<10}{d}" for d in link["details"])
        lines.append(f"{'':<10}-> {link['where']}")
    return "\n".join(lines)
