"""Stage ``register``: register the best candidate by validation accuracy; promote it through a gate.

The test split is only reported (as a tag), never used to choose. Registering is idempotent:
a version is identified by the sha256 of its ``model.keras``, so a re-run with unchanged inputs
finds the existing version.

Registering a version and moving ``@champion`` are two steps. The alias moves only when the
candidate passes the gate of ``params.yaml: promote``:

(a) its validation accuracy beats the current champion's by more than ``min_val_gain`` (or there
    is no champion yet);
(b) it answers every ``golden`` example right through the logged pyfunc model, loaded with
    ``mlflow.pyfunc.load_model("models:/<name>/<version>")`` as ``mlflow models serve`` loads it;
(c) its p50 single-text latency through that same loaded model is within ``latency_budget_ms``.

A refused version stays registered, tagged ``promotion=refused`` and ``promotion_reason``; the
alias stays where it was. ``strict=True`` (``newsrnn register --strict``) then raises, so a CI
job fails; by default the command says so and succeeds, so ``dvc repro`` goes on to the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsrnn.config import Config
from newsrnn.errors import PromotionRefused, RegisterError
from newsrnn.fileio import read_metrics, write_json

ALIAS = "champion"
# Copied from the training run to the registered version: one hop from version to its origin.
LINEAGE_KEYS = ("git_commit", "git_dirty", "dvc_rev", "dvc_data_md5", "dvc_exp_name", "dvc_exp_baseline",
                "kfp_run_id", "data_sha256")
LATENCY_CALLS = 30


@dataclass
class GateResult:
    """The gate's verdict on one candidate version."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    golden_passed: int = 0
    golden_total: int = 0
    latency_p50_ms: float | None = None


def pick_champion(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry with the highest val_accuracy (ties: the earlier one in the list)."""
    if not metrics:
        raise RegisterError("no evaluated architectures to choose from; run `newsrnn evaluate` first")
    return max(metrics, key=lambda m: (m["val_accuracy"], -metrics.index(m)))


def check_gate(cfg: Config, model_uri: str, val_accuracy: float, champion_val: float | None) -> GateResult:
    """Apply the promotion gate to the model at ``model_uri`` (a ``models:/name/version`` URI)."""
    import mlflow
    import numpy as np
    import pandas as pd

    gate = cfg.promote
    reasons = []
    if champion_val is not None and not val_accuracy > champion_val + gate.min_val_gain:
        reasons.append(f"val_accuracy {val_accuracy:.4f} does not beat the champion's {champion_val:.4f} "
                       f"by more than promote.min_val_gain {gate.min_val_gain}")
    model = mlflow.pyfunc.load_model(model_uri)
    golden_ok = 0
    if gate.golden:
        out = model.predict(pd.DataFrame({"text": [g.text for g in gate.golden]}))
        wrong = [(g, got) for g, got in zip(gate.golden, out["label"]) if got != g.label]
        golden_ok = len(gate.golden) - len(wrong)
        if wrong:
            shown = "; ".join(f"{g.text!r} -> {got} (expected {g.label})" for g, got in wrong[:3])
            more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
            reasons.append(f"{len(wrong)} of {len(gate.golden)} golden examples wrong: {shown}{more}")
    probe = pd.DataFrame({"text": [gate.golden[0].text if gate.golden else "Stocks rally as oil prices fall"]})
    for _ in range(3):
        model.predict(probe)
    times = []
    for _ in range(LATENCY_CALLS):
        t0 = time.perf_counter()
        model.predict(probe)
        times.append((time.perf_counter() - t0) * 1000)
    p50 = float(np.percentile(times, 50))
    if p50 > gate.latency_budget_ms:
        reasons.append(f"p50 latency {p50:.1f} ms over promote.latency_budget_ms {gate.latency_budget_ms:g}")
    return GateResult(not reasons, reasons, golden_ok, len(gate.golden), p50)


def _lineage_of(client: Any, run_id: str | None) -> dict[str, str]:
    """The lineage tags of the run that produced the model, else those of this process."""
    from newsrnn.tracking import lineage_tags

    tags: dict[str, str] = {}
    if run_id:
        try:
            tags = dict(client.get_run(run_id).data.tags)
        except Exception:  # the run is in a store that is gone: fall back to what we know now
            tags = {}
    here = lineage_tags()
    out = {k: tags.get(k, here.get(k)) for k in LINEAGE_KEYS}
    if run_id:
        out["run_id"] = run_id
    return {k: str(v) for k, v in out.items() if v}


def register(cfg: Config, candidates: list[tuple[str | Path, str | Path]] | None = None,
             out_path: str | Path = "artifacts/champion.json", strict: bool = False) -> dict[str, Any]:
    """Register the best of ``candidates`` [(metrics json, model dir)], promote it if it passes the gate.

    Writes ``champion.json`` describing whoever holds ``@champion`` afterwards, with the
    candidate's verdict (``promoted``, ``reasons``). Raises PromotionRefused when ``strict`` and
    the candidate was refused.
    """
    import mlflow
    from mlflow import MlflowClient

    from newsrnn.tracking import use_tracking_uri

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
        m = read_metrics(p)
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
            "test_accuracy": f"{best['test_accuracy']:.4f}", **_lineage_of(client, best.get("run_id")),
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
                from newsrnn.tracking import mark_training_experiment, set_experiment

                exp = set_experiment(cfg.mlflow.experiment)
                mark_training_experiment(client, exp.experiment_id)
                with mlflow.start_run(run_name=f"register-{best['arch']}", tags={"stage": "register", **tags}) as run:
                    model_uri = log_pyfunc_model(best["_model_dir"])
                    tags["run_id"] = run.info.run_id
            version = mlflow.register_model(model_uri, name, tags=tags)
            created = True
        current = _alias_holder(client, name)
        if current is not None and str(current.version) == str(version.version):
            gate = GateResult(True, ["already @champion"])
            promoted = True
        else:
            champion_val = float(current.tags["val_accuracy"]) if current is not None else None
            gate = check_gate(cfg, f"models:/{name}/{version.version}", best["val_accuracy"], champion_val)
            promoted = gate.passed
            verdict = {"promotion": "promoted" if promoted else "refused",
                       "promotion_reason": "; ".join(gate.reasons) if gate.reasons else "passed the gate",
                       "golden_passed": f"{gate.golden_passed}/{gate.golden_total}",
                       "pyfunc_latency_p50_ms": f"{gate.latency_p50_ms:.2f}"}
            for k, v in verdict.items():
                client.set_model_version_tag(name, version.version, k, v[:5000])
            if promoted:
                client.set_registered_model_alias(name, ALIAS, version.version)
                current = client.get_model_version(name, version.version)
    except mlflow.exceptions.MlflowException as exc:
        raise RegisterError(f"MLflow registry at {uri} failed: {str(exc)[:300]}; "
                            "fix the tracking server and re-run `newsrnn register`") from None
    holder = current.tags if current is not None else {}
    result = {"name": name, "alias": ALIAS, "version": int(current.version) if current is not None else None,
              "created": created, "arch": holder.get("arch"),
              "val_accuracy": float(holder["val_accuracy"]) if "val_accuracy" in holder else None,
              "test_accuracy": float(holder["test_accuracy"]) if "test_accuracy" in holder else None,
              "model_sha256": holder.get("model_sha256"), "data_sha256": holder.get("data_sha256"),
              "model_uri": f"models:/{name}@{ALIAS}",
              "candidate": {"arch": best["arch"], "version": int(version.version),
                            "val_accuracy": best["val_accuracy"], "promoted": promoted, "reasons": gate.reasons,
                            "latency_p50_ms": gate.latency_p50_ms},
              "promoted": promoted,
              "candidates": {m["arch"]: m["val_accuracy"] for m in metrics}}
    if promoted and current is not None and str(current.version) == str(version.version):
        # Exact values for the champion, not the 4-digit tags.
        result.update(val_accuracy=best["val_accuracy"], test_accuracy=best["test_accuracy"])
    write_json(out_path, result)
    _print_runs_page(client, cfg, uri)
    new = " (new version)" if created else " (unchanged)"
    if promoted:
        print(f"register: {best['arch']} (val_accuracy {best['val_accuracy']:.4f}) is {name} "
              f"v{version.version} @{ALIAS}{new}")
    else:
        stays = f"stays on v{current.version} ({holder.get('arch')})" if current is not None else "is not set"
        message = (f"{best['arch']} {name} v{version.version} not promoted: {'; '.join(gate.reasons)}; "
                   f"@{ALIAS} {stays}")
        print(f"register: {message}")
        if strict:
            raise PromotionRefused(message)
    return result


def _alias_holder(client: Any, name: str) -> Any:
    """The version holding ``@champion``, or None."""
    import mlflow

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except mlflow.exceptions.MlflowException:
        return None


def _print_runs_page(client: Any, cfg: Config, uri: str) -> None:
    """Where to compare the candidates in the MLflow UI."""
    from newsrnn.tracking import runs_page

    try:
        exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    except Exception:  # the link is a convenience; never fail register for it
        return
    if exp is not None:
        serve = "" if uri.startswith(("http://", "https://")) else f" (after `mlflow ui --backend-store-uri {uri}`)"
        print(f"register: compare the candidates at {runs_page(uri, exp.experiment_id)}{serve}")
