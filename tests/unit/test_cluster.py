"""Cluster rules: in Kubeflow a local or unreachable store is an error; on a laptop it is the default."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, small_params


def _cfg(**overrides: object):
    from newsrnn.config import config_from_dict

    return config_from_dict(small_params(**overrides))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_laptop_keeps_the_sqlite_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsrnn.cluster import in_kubeflow, optuna_storage, tracking_uri

    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    monkeypatch.delenv("NEWSRNN_CLUSTER", raising=False)
    assert not in_kubeflow()
    assert tracking_uri(_cfg()) == "sqlite:///mlflow.db"
    assert optuna_storage("journal:/tmp/x.journal") == "journal:/tmp/x.journal"


@pytest.mark.parametrize("marker", ["KFP_POD_NAME", "NEWSRNN_CLUSTER"])
@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns", ""])
def test_kubeflow_refuses_local_tracking(monkeypatch: pytest.MonkeyPatch, marker: str, uri: str) -> None:
    from newsrnn.cluster import tracking_uri
    from newsrnn.errors import ClusterConfigError

    monkeypatch.setenv(marker, "newsrnn-train-abc" if marker == "KFP_POD_NAME" else "1")
    with pytest.raises(ClusterConfigError, match="newsrnn-mlflow") as exc:
        tracking_uri(_cfg(**{"mlflow.tracking_uri": uri}))
    assert "\n" not in str(exc.value)


def test_kubeflow_refuses_unreachable_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsrnn.cluster import optuna_storage, tracking_uri
    from newsrnn.errors import ClusterConfigError

    monkeypatch.setenv("KFP_POD_NAME", "newsrnn-train-abc")
    port = _closed_port()
    with pytest.raises(ClusterConfigError, match=f"127.0.0.1:{port}.*not reachable|not reachable.*{port}"):
        tracking_uri(_cfg(), f"http://127.0.0.1:{port}")
    with pytest.raises(ClusterConfigError, match="newsrnn-optuna"):
        optuna_storage("journal:/work/optuna.journal")
    with pytest.raises(ClusterConfigError, match="not reachable"):
        optuna_storage(f"postgresql+psycopg2://u:secret@127.0.0.1:{port}/optuna")
    # Tracking explicitly off: nothing to check.
    assert tracking_uri(_cfg(**{"mlflow.enabled": False, "mlflow.tracking_uri": "sqlite:///x.db"})) == "sqlite:///x.db"


def test_kubeflow_accepts_a_reachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsrnn.cluster import tracking_uri

    monkeypatch.setenv("NEWSRNN_CLUSTER", "1")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert tracking_uri(_cfg()) == uri


def test_submit_refuses_local_stores_and_names_the_secret(tmp_path: Path) -> None:
    """`newsrnn kfp submit` stops before contacting any host, in one line."""
    out = subprocess.run([str(Path(sys.executable).parent / "newsrnn"), "kfp", "submit", "--params",
                          str(ROOT / "params.yaml"), "--host", "http://127.0.0.1:9", "--package",
                          str(ROOT / "pipelines" / "newsrnn_pipeline.yaml"),
                          "--arg", "mlflow_tracking_uri=sqlite:///mlflow.db"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "newsrnn-mlflow" in lines[0] and "kubectl create secret" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_submit_checks_loopback_and_journal() -> None:
    from newsrnn.cluster import submit_checks

    cfg = _cfg()
    assert submit_checks({"mlflow_tracking_uri": "", "optuna_storage": ""}, cfg) == []
    assert submit_checks({"mlflow_tracking_uri": "https://mlflow.example.com"}, cfg) == []
    assert "newsrnn-mlflow" in submit_checks({"mlflow_tracking_uri": "http://localhost:5000"}, cfg)[0]
    assert "newsrnn-optuna" in submit_checks({"optuna_storage": "journal:/x.journal"}, cfg)[0]
    assert "tune.storage" in submit_checks({}, _cfg(**{"tune.storage": "sqlite:///optuna.db"}))[0]


def test_stage_params_validate_and_drop_the_sqlite_uri() -> None:
    from newsrnn.config import STAGES, config_from_dict, stage_params

    cfg = _cfg(**{"models": ["rnn", "gru"]})
    for stage in STAGES:
        cut = stage_params(cfg, stage, "gru" if stage in ("tune", "train", "evaluate") else None)
        config_from_dict(cut)
        assert "kfp" not in cut
        assert cut.get("mlflow", {}).get("tracking_uri", "") == ""
    assert set(stage_params(cfg, "fetch")) == {"data", "models", "architectures", "ensemble"}
