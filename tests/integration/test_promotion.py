"""The promotion gate of `register`: each refusal keeps @champion where it was and says why.

Every test works on its own copy of the shared store's SQLite registry (the champion there is
v1), with a real pyfunc model loaded from ``models:/`` as ``mlflow models serve`` loads it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from newsrnn.config import CLASS_NAMES, config_from_dict
from newsrnn.fileio import read_metrics
from newsrnn.register import PromotionRefused, register

CANDIDATE = "wide"  # not the store's champion
PASS_VAL = -0.5  # a promote.min_val_gain that a candidate at 0.999 val clears, even against 1.0


def _setup(pipeline_store: dict, tmp_path: Path, val_accuracy: float, **promote: object) -> tuple:
    """(cfg, candidates) on a copy of the registry; the candidate's val accuracy set to ``val_accuracy``."""
    root = pipeline_store["root"]
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    params = json.loads(json.dumps(pipeline_store["params"]))
    params["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params["promote"].update(promote)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    m = read_metrics(root / "metrics" / f"{CANDIDATE}.json")
    (tmp_path / "metrics" / f"{CANDIDATE}.json").write_text(json.dumps({**m, "val_accuracy": val_accuracy}))
    return config_from_dict(params), [(tmp_path / "metrics" / f"{CANDIDATE}.json",
                                       root / "artifacts/models" / CANDIDATE)], params


def _state(cfg) -> tuple[str, dict]:
    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow.tracking_uri)
    champion = str(client.get_model_version_by_alias("agnews-rnn", "champion").version)
    cand = [v for v in client.search_model_versions("name='agnews-rnn'") if v.tags.get("arch") == CANDIDATE]
    assert len(cand) == 1
    return champion, cand[0].tags


def _champion_val(pipeline_store: dict) -> float:
    return json.loads((pipeline_store["root"] / "artifacts/champion.json").read_text())["val_accuracy"]


def _served_label(cfg, text: str) -> str:
    """What the registered v2 answers, loaded as the server loads it."""
    import mlflow
    import pandas as pd

    from newsrnn.tracking import use_tracking_uri

    use_tracking_uri(cfg.mlflow.tracking_uri)
    return mlflow.pyfunc.load_model("models:/agnews-rnn/2").predict(pd.DataFrame({"text": [text]}))["label"][0]


@pytest.mark.slow
def test_refused_when_not_better_than_champion_by_the_margin(pipeline_store: dict, tmp_path: Path) -> None:
    champ_val = _champion_val(pipeline_store)
    cfg, cands, _ = _setup(pipeline_store, tmp_path, champ_val + 0.001, min_val_gain=0.01)
    result = register(cfg, cands, out_path=tmp_path / "champion.json")
    assert not result["promoted"] and result["version"] == 1 and result["candidate"]["version"] == 2
    champion, tags = _state(cfg)
    assert champion == "1"
    assert tags["promotion"] == "refused" and "min_val_gain 0.01" in tags["promotion_reason"]
    assert json.loads((tmp_path / "champion.json").read_text())["arch"] == pipeline_store["champion"]["arch"]
    with pytest.raises(PromotionRefused, match="not promoted: val_accuracy"):
        register(cfg, cands, out_path=tmp_path / "champion.json", strict=True)
    assert _state(cfg)[0] == "1"


@pytest.mark.slow
def test_refused_when_a_golden_example_is_wrong_then_promoted_when_all_are_right(pipeline_store: dict,
                                                                                  tmp_path: Path) -> None:
    text = "stocks profit oil market shares bank"
    # The val gate is passed whatever the store's champion scored (the synthetic corpus can give
    # it a perfect 1.0): these two tests are about the golden examples and the latency budget.
    cfg, cands, params = _setup(pipeline_store, tmp_path, 0.999, min_val_gain=PASS_VAL)
    register(cfg, cands, out_path=tmp_path / "champion.json")  # no golden examples: promoted as v2
    assert _state(cfg)[0] == "2"
    label = _served_label(cfg, text)
    wrong = next(c for c in CLASS_NAMES if c != label)

    cfg, cands, params = _setup(pipeline_store, tmp_path, 0.999, min_val_gain=PASS_VAL,
                                golden=[{"text": text, "label": wrong}])
    result = register(cfg, cands, out_path=tmp_path / "champion.json")
    champion, tags = _state(cfg)
    assert not result["promoted"] and champion == "1"
    assert tags["promotion"] == "refused" and tags["golden_passed"] == "0/1"
    assert f"'{text}' -> {label} (expected {wrong})" in tags["promotion_reason"]

    cfg, cands, params = _setup(pipeline_store, tmp_path, 0.999, min_val_gain=PASS_VAL,
                                golden=[{"text": text, "label": label}])
    result = register(cfg, cands, out_path=tmp_path / "champion.json")
    champion, tags = _state(cfg)
    assert result["promoted"] and champion == "2" and result["arch"] == CANDIDATE
    assert tags["promotion"] == "promoted" and tags["golden_passed"] == "1/1"


@pytest.mark.slow
def test_refused_over_the_latency_budget_and_strict_cli_exits_nonzero(pipeline_store: dict, tmp_path: Path) -> None:
    cfg, cands, params = _setup(pipeline_store, tmp_path, 0.999, min_val_gain=PASS_VAL,
                                latency_budget_ms=0.0001)
    result = register(cfg, cands, out_path=tmp_path / "champion.json")
    champion, tags = _state(cfg)
    assert not result["promoted"] and champion == "1"
    assert "over promote.latency_budget_ms 0.0001" in tags["promotion_reason"]
    assert float(tags["pyfunc_latency_p50_ms"]) > 0.0001

    # The command: says so and succeeds by default; one error line and exit 2 with --strict.
    root = pipeline_store["root"]
    proj = tmp_path / "proj"
    shutil.copytree(tmp_path / "metrics", proj / "metrics")
    (proj / "artifacts").mkdir()
    shutil.copytree(root / "artifacts/models", proj / "artifacts/models")
    params["models"] = [CANDIDATE]
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    soft = subprocess.run(["newsrnn", "register"], cwd=proj, capture_output=True, text=True, timeout=300)
    assert soft.returncode == 0, soft.stderr
    assert "not promoted" in soft.stdout and "@champion stays on v1" in soft.stdout
    strict = subprocess.run(["newsrnn", "register", "--strict"], cwd=proj, capture_output=True, text=True,
                            timeout=300)
    assert strict.returncode == 2, strict.stdout + strict.stderr
    errors = [line for line in strict.stderr.splitlines() if line.startswith("newsrnn register: error:")]
    assert "Traceback" not in strict.stderr and len(errors) == 1, strict.stderr  # TensorFlow's own log lines aside
    assert "latency" in errors[0] and "@champion stays on v1" in errors[0] and _state(cfg)[0] == "1"
