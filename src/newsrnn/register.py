"""Stage ``register``: pick the best architecture by validation accuracy and make it @champion.

The test split is only reported (as a tag), never used to choose. Registering is idempotent:
a version is identified by the sha256 of its ``model.keras``, so a re-run with unchanged inputs
finds the existing version and only (re)points the alias.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from newsrnn.config import Config
from newsrnn.errors import RegisterError
from newsrnn.fileio import write_json

ALIAS = "champion"


def pick_champion(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry with the highest val_accuracy (ties: the earlier one in the list)."""
    if not metrics:
        raise RegisterError("no evaluated architectures to choose from; run `newsrnn evaluate` first")
    return max(metrics, key=lambda m: (m["val_accuracy"], -metrics.index(m)))


def register(cfg: Config, candidates: list[tuple[str | Path, str | Path]] | None = None,
             out_path: str | Path = "artifacts/champion.json") -> dict[str, Any]:
    """Register the champion among ``candidates`` [(metrics json, model dir)]; write champion.json."""
    import mlflow
    from mlflow import MlflowClient

    from newsrnn.tracking import git_commit, use_tracking_uri

    if candidates is None:
        candidates = [(f"metrics/{a}.json", f"artifacts/models/{a}") for a in cfg.models]
        if cfg.ensemble:
            candidates.append(("metrics/ensemble.json", "artifacts/ensemble"))
    metrics = []
    for mpath, mdir in candidates:
        p = Path(mpath)
        if not p.exists():
            cmd = "newsrnn ensemble" if p.stem == "ensemble" else f"newsrnn evaluate {p.stem}"
            raise RegisterError(f"{p}: not found; run `{cmd}` first")
        m = json.loads(p.read_text())
        if m.get("skipped"):
            continue
        m["_model_dir"] = str(mdir)
        metrics.append(m)
    best = pick_champion(metrics)
    name = cfg.mlflow.registered_model
    uri = cfg.tracking_uri()
    use_tracking_uri(uri)
    client = MlflowClient(uri)
    sha = best["model_sha256"]
    data_sha = json.loads((Path(best["_model_dir"]) / "train.json").read_text()).get("data_sha256", "unknown")
    tags = {"arch": best["arch"], "val_accuracy": f"{best['val_accuracy']:.4f}",
            "test_accuracy": f"{best['test_accuracy']:.4f}", "git_commit": git_commit(),
            "data_sha256": data_sha, "model_sha256": sha}
    try:
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except mlflow.exceptions.MlflowException:
            versions = []
        same = [v for v in versions if v.tags.get("model_sha256") == sha]
        if same:
            version = same[0]
            created = False
        else:
            model_uri = best.get("model_uri")
            if not model_uri:
                # Tracking was down during train/evaluate: log the model now, in a run of its own.
                from newsrnn.serving import log_pyfunc_model

                mlflow.set_experiment(cfg.mlflow.experiment)
                with mlflow.start_run(run_name=f"register-{best['arch']}", tags={"stage": "register", **tags}):
                    model_uri = log_pyfunc_model(best["_model_dir"])
            version = mlflow.register_model(model_uri, name, tags=tags)
            created = True
        client.set_registered_model_alias(name, ALIAS, version.version)
    except mlflow.exceptions.MlflowException as exc:
        raise RegisterError(f"MLflow registry at {uri} failed: {str(exc)[:300]}; "
                            "fix the tracking server and re-run `newsrnn register`") from None
    result = {"name": name, "alias": ALIAS, "version": int(version.version), "created": created,
              "arch": best["arch"], "val_accuracy": best["val_accuracy"],
              "test_accuracy": best["test_accuracy"], "model_sha256": sha, "data_sha256": data_sha,
              "model_uri": f"models:/{name}@{ALIAS}",
              "candidates": {m["arch"]: m["val_accuracy"] for m in metrics}}
    write_json(out_path, result)
    print(f"register: {best['arch']} (val_accuracy {best['val_accuracy']:.4f}) is {name} "
          f"v{version.version} @{ALIAS}{' (new version)' if created else ' (unchanged)'}")
    return result
