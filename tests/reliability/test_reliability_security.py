"""Reliability, security (cases 13-17): servers are not exposed by default, models load only
safely, downloads are verified and extracted in place, credentials stay out of every record, and the
Keras pin has the safe_mode fixes."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import http.server
import io
import json
import re
import secrets
import sys
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from rel_support import (
    ROOT,
    base_env,
    free_port,
    log_model,
    newsrnn,
    postgres_url,
    run,
    small_params,
    write_corpus,
)

SRC = ROOT / "src" / "newsrnn"


def _string_constants(path: Path) -> Iterator[tuple[int, str]]:
    """(line, value) of every string constant in a module that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


# ---------------------------------------------------------------------------------------------- 13
def test_case13_server_binds_loopback_unless_auth_and_allowed_hosts() -> None:
    """Default 127.0.0.1; any other address without basic-auth and an allowed-hosts list is an error
    naming the missing option; '*' is refused; no module in src binds 0.0.0.0 on its own."""
    from newsrnn.errors import ServerConfigError
    from newsrnn.server import ServerOptions, server_command

    cmd = server_command(ServerOptions())
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--app-name" not in cmd
    for host in ("0.0.0.0", "192.168.1.5", "::", "mlflow.example.com"):
        with pytest.raises(ServerConfigError, match=r"--app-name basic-auth and --allowed-hosts"):
            server_command(ServerOptions(host=host))
        with pytest.raises(ServerConfigError, match=r"needs --allowed-hosts"):
            server_command(ServerOptions(host=host, app_name="basic-auth"))
        with pytest.raises(ServerConfigError, match=r"needs --app-name basic-auth"):
            server_command(ServerOptions(host=host, allowed_hosts=("mlflow.example.com",)))
    with pytest.raises(ServerConfigError, match=r"'\*'"):
        server_command(ServerOptions(host="0.0.0.0", app_name="basic-auth", allowed_hosts=("*",)))
    ok = server_command(ServerOptions(host="0.0.0.0", app_name="basic-auth",
                                      allowed_hosts=("mlflow.example.com",)))
    assert ok[ok.index("--app-name") + 1] == "basic-auth"
    assert ok[ok.index("--allowed-hosts") + 1] == "mlflow.example.com"

    proc = run([sys.executable, "-m", "newsrnn.server", "--host", "0.0.0.0"], ROOT, timeout=60)
    assert proc.returncode == 2 and "--app-name basic-auth" in proc.stderr, proc.stderr

    for path in SRC.glob("*.py"):
        for line, value in _string_constants(path):
            assert "0.0.0.0" not in value, f"{path.name}:{line} binds every interface: {value!r}"


@pytest.mark.slow
def test_case13_real_server_with_basic_auth_answers_401(tmp_path: Path) -> None:
    """A real ``mlflow server --app-name basic-auth`` started by newsrnn: 401 without or with wrong
    credentials, 200 for the admin whose password came from the environment only."""
    import importlib.util

    from rel_support import stop_group

    from newsrnn.server import ServerOptions, start_server, wait_ready

    assert importlib.util.find_spec("flask_wtf"), (
        "MLflow's basic-auth app cannot start: Flask-WTF is not installed (it comes with mlflow[auth]); "
        "see defect D5")
    password = secrets.token_urlsafe(16)
    port = free_port()
    opts = ServerOptions(port=port, app_name="basic-auth", backend_store_uri=f"sqlite:///{tmp_path / 'm.db'}",
                         artifacts_destination=str(tmp_path / "art"), auth_dir=str(tmp_path / "auth"))
    proc = start_server(opts, cwd=tmp_path, env=base_env(MLFLOW_AUTH_ADMIN_PASSWORD=password),
                        log=tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"
    api = f"{url}/api/2.0/mlflow/experiments/search"
    try:
        try:
            wait_ready(url, timeout=180, proc=proc)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{(tmp_path / 'server.log').read_text(errors='replace')[-3000:]}")
        q = {"max_results": 1}
        assert requests.get(api, params=q, timeout=10).status_code == 401
        assert requests.get(api, params=q, auth=("admin", "wrong"), timeout=10).status_code == 401
        good = requests.get(api, params=q, auth=("admin", password), timeout=10)
        assert good.status_code == 200, good.text[:300]
    finally:
        stop_group(proc)
    ini = (tmp_path / "auth" / "basic_auth.ini").read_text()
    assert password not in ini and "NO_PERMISSIONS" in ini
    assert password not in (tmp_path / "server.log").read_text(errors="replace")


def test_case13_auth_without_admin_password_refused(tmp_path: Path) -> None:
    """basic-auth with no admin password in the environment is refused before anything starts."""
    from newsrnn.errors import ServerConfigError
    from newsrnn.server import ServerOptions, start_server

    env = {k: v for k, v in base_env().items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    with pytest.raises(ServerConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        start_server(ServerOptions(app_name="basic-auth", auth_dir=str(tmp_path / "a")), cwd=tmp_path,
                     env=env)


# ---------------------------------------------------------------------------------------------- 14
def _lambda_model(path: Path, marker: Path) -> None:
    """A .keras file whose Lambda layer writes ``marker`` when deserialised unsafely."""
    import keras

    inp = keras.Input(shape=(), dtype="string", name="text")
    # The path is a constant inside the function's code, which Keras marshals into the file.
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")  # noqa: S307 - the test's own code
    out = keras.layers.Lambda(payload)(inp)  # no output_shape: rebuilding the model calls the function
    keras.Model(inp, out).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once; start clean


def test_case14_only_safe_keras_files_load(tmp_path: Path, trained) -> None:
    """.h5 / pickle / SavedModel are refused by name; a crafted .keras with a Lambda layer (its sha256
    recorded, so only safe_mode stands in the way) is refused and its code never runs, in-process and
    through the CLI. Control: loading it unsafely does run the code."""
    import keras

    from newsrnn.errors import ArtifactError
    from newsrnn.fileio import sha256_file
    from newsrnn.modelio import load_text_model

    for name in ("model.h5", "model.pkl", "model.pickle", "model.joblib", "saved_model.pb"):
        p = tmp_path / name
        p.write_bytes(b"\x80\x04K\x01.")
        with pytest.raises(ArtifactError, match="only .keras model files are accepted"):
            load_text_model(p)
    sm = tmp_path / "savedmodel"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="model file not found"):
        load_text_model(sm)

    crafted = tmp_path / "crafted"
    crafted.mkdir()
    marker = tmp_path / "PWNED"
    _lambda_model(crafted / "model.keras", marker)
    (crafted / "model.sha256").write_text(sha256_file(crafted / "model.keras") + "\n")
    with pytest.raises(ArtifactError, match="refused to load"):
        load_text_model(crafted)
    assert not marker.exists()
    proc = run(newsrnn("predict", "--model", str(crafted), "hello"), trained.root)
    assert proc.returncode == 2 and "refused to load" in proc.stderr, proc.stderr
    assert not marker.exists()

    keras.saving.load_model(crafted / "model.keras", safe_mode=False, compile=False)
    assert marker.exists(), "control failed: the crafted file does not run code when loaded unsafely"


def test_case14_no_pickle_loading_in_src() -> None:
    """No pickle-family import, unsafe Keras load, .h5 load or allow_pickle anywhere in src/."""
    banned_modules = {"pickle", "cPickle", "cloudpickle", "joblib", "dill", "shelve", "marshal", "_pickle"}
    problems = []
    for path in sorted(SRC.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                             if a.name.split(".")[0] in banned_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in banned_modules:
                problems.append(f"{path.name}:{node.lineno} from {node.module} import")
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg in ("safe_mode", "allow_pickle") and isinstance(kw.value, ast.Constant) \
                            and kw.value.value is (kw.arg == "allow_pickle"):
                        problems.append(f"{path.name}:{node.lineno} {kw.arg}={kw.value.value}")
                func = ast.unparse(node.func)
                if func.endswith(("read_pickle", "enable_unsafe_deserialization", "torch.load")):
                    problems.append(f"{path.name}:{node.lineno} {func}()")
        for line, value in _string_constants(path):
            if re.search(r"\.(h5|hdf5|pkl|pickle|joblib)$", value):
                problems.append(f"{path.name}:{line} refers to {value!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_case14_logged_mlflow_model_has_no_pickle(trained, tmp_path: Path) -> None:
    """The pyfunc logged for serving is "models from code": no pickled Python object in its artifacts."""
    uri = log_model(trained.model_dir, f"sqlite:///{tmp_path / 'm.db'}", tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".db"]
    mlmodels = [p for p in files if p.name == "MLmodel"]
    assert mlmodels, (uri, files)
    pickled = [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib", ".cloudpickle")]
    assert not pickled, pickled
    flavor = yaml.safe_load(mlmodels[0].read_text())["flavors"]["python_function"]
    assert "model_code_path" in flavor and "python_model" not in flavor, flavor
    assert any(p.name == "model.keras" for p in files)


# ---------------------------------------------------------------------------------------------- 15
def _tarball(path: Path, corpus: Path, hostile: tarfile.TarInfo | None = None,
             payload: bytes = b"evil") -> Path:
    """A gzipped ag_news_csv tarball, optionally with one hostile member."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(corpus / "train.csv", arcname="ag_news_csv/train.csv")
        tar.add(corpus / "test.csv", arcname="ag_news_csv/test.csv")
        if hostile is not None:
            hostile.size = len(payload) if hostile.isfile() else 0
            tar.addfile(hostile, io.BytesIO(payload) if hostile.isfile() else None)
    return path


@contextlib.contextmanager
def _http_dir(directory: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``directory``."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_case15_traversal_members_refused_nothing_written(tmp_path: Path) -> None:
    """``../``, absolute, nested-``..``, symlink and hardlink members: the whole archive is refused
    before any member is written, inside or outside the target."""
    from newsrnn.errors import DataError
    from newsrnn.fetch import safe_extract

    corpus = write_corpus(tmp_path / "csv", 20, 8)
    outside = tmp_path / "outside"
    outside.mkdir()
    abs_target = outside / f"abs-{uuid.uuid4().hex}.txt"
    hostile = {
        "dotdot": tarfile.TarInfo("../escaped.txt"),
        "absolute": tarfile.TarInfo(str(abs_target)),
        "nested": tarfile.TarInfo("ag_news_csv/../../escaped2.txt"),
    }
    link = tarfile.TarInfo("ag_news_csv/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hostile["symlink"] = link
    hard = tarfile.TarInfo("ag_news_csv/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../outside/x"
    hostile["hardlink"] = hard
    for name, member in hostile.items():
        target = tmp_path / "extract" / name / "inner"
        archive = _tarball(tmp_path / f"{name}.tgz", corpus, member)
        with pytest.raises(DataError, match="refusing the archive"):
            safe_extract(archive, target)
        assert not target.exists() or not any(target.rglob("*")), f"{name}: members were written"
    assert not abs_target.exists()
    assert not list((tmp_path / "extract").rglob("escaped*")) and not (tmp_path / "escaped.txt").exists()
    good = tmp_path / "good_out"
    safe_extract(_tarball(tmp_path / "good.tgz", corpus), good)  # control
    assert (good / "ag_news_csv" / "train.csv").read_bytes() == (corpus / "train.csv").read_bytes()


def test_case15_download_verified_by_sha256_before_use(tmp_path: Path) -> None:
    """From a real HTTP server: no pinned sha256 -> not downloaded; wrong sha256 -> refused, deleted, nothing
    extracted or written; the right sha256 -> fetched from the URL."""
    from newsrnn.config import config_from_dict
    from newsrnn.errors import FetchError
    from newsrnn.fetch import fetch

    corpus = write_corpus(tmp_path / "csv", 40, 12)
    served = tmp_path / "www"
    served.mkdir()
    archive = _tarball(served / "ag_news_csv.tgz", corpus)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with _http_dir(served) as base:
        def attempt(sha: str | None, name: str) -> Path:
            params = small_params(**{"data.sources": ["url"], "data.url": f"{base}/ag_news_csv.tgz",
                                     "data.url_sha256": sha})
            out = tmp_path / name
            fetch(config_from_dict(params).data, out / "raw", out / "download")
            return out

        with pytest.raises(FetchError, match="no data.url_sha256 is set"):
            attempt(None, "unpinned")
        assert not (tmp_path / "unpinned" / "download" / "ag_news_csv.tgz").exists()
        with pytest.raises(FetchError, match=f"sha256 mismatch: expected {'0' * 64}, got {digest}"):
            attempt("0" * 64, "wrong")
        assert not (tmp_path / "wrong" / "download" / "ag_news_csv.tgz").exists()
        assert not (tmp_path / "wrong" / "download" / "extracted").exists()
        assert not (tmp_path / "wrong" / "raw" / "train.parquet").exists()
        ok = attempt(digest, "right")
    info = json.loads((ok / "raw" / "source.json").read_text())
    assert info["source"] == "url" and info["sha256"]["ag_news_csv.tgz"] == digest
    assert info["rows"] == {"train": 40, "test": 12}


# ---------------------------------------------------------------------------------------------- 16
SECRET_WORDS = {"password", "passwd", "secret", "token", "apikey", "credential", "credentials"}
URL_CREDENTIALS = re.compile(r"://[^/\s:@'\"]+:[^@\s/'\"]+@")


def _walk(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, node


def test_case16_no_credentials_in_params_or_compiled_pipeline() -> None:
    """params.yaml holds no secret-named key with a value and no URL with a password; same for the
    compiled Kubeflow YAML (secrets come from the environment / Kubernetes secrets)."""
    for path in (ROOT / "params.yaml", ROOT / "pipelines" / "newsrnn_pipeline.yaml"):
        if not path.exists():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            for key, value in _walk(doc):
                if isinstance(value, str) and URL_CREDENTIALS.search(value):
                    pytest.fail(f"{path.name}: {key} holds a URL with a password")
                words = set(re.split(r"[_\-]", key.split(".")[-1].lower().replace("api_key", "apikey")))
                if words & SECRET_WORDS and value not in (None, "", False) \
                        and not isinstance(value, (dict, list)) and "secret" not in str(value).lower():
                    pytest.fail(f"{path.name}: {key} holds a literal credential-like value")


@pytest.mark.slow
@pytest.mark.postgres
def test_case16_no_credentials_in_logs_mlflow_or_tuned_file(trained, tmp_path: Path) -> None:
    """A storage URL with a password and secrets in the environment: none of them appears in the
    command's output, the tuned file, or any MLflow param, tag or metric name."""
    password = f"Pw{secrets.token_hex(8)}"
    env_secret = f"Env{secrets.token_hex(8)}"
    pg = postgres_url()
    seed = int(uuid.uuid4().int % 1_000_000)
    if pg is not None:  # trust auth ignores the password, so the URL really is used
        storage = pg.replace("postgres@", f"postgres:{password}@")
    else:
        storage = f"sqlite:///{tmp_path / 'optuna.db'}?password={password}"
    proj = trained.copy_to(tmp_path / "p", **{"seed": seed, "tune.n_trials": 1, "mlflow.enabled": True})
    env = base_env(NEWSRNN_OPTUNA_STORAGE=storage, MLFLOW_TRACKING_PASSWORD=env_secret,
                   AWS_SECRET_ACCESS_KEY=env_secret, MLFLOW_TRACKING_URI=f"sqlite:///{proj / 'mlflow.db'}")
    proc = run(newsrnn("tune", "rnn_title"), proj, env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        seen = proc.stdout + proc.stderr
        assert "***" in seen or pg is None
        for f in (proj / "artifacts" / "tuned").rglob("*.yaml"):
            seen += f.read_text()
        from mlflow import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert runs
        for r in runs:
            seen += json.dumps([r.data.params, r.data.tags, list(r.data.metrics)])
        assert password not in seen
        assert env_secret not in seen
    finally:
        if pg is not None:
            import optuna

            tuned = yaml.safe_load((proj / "artifacts/tuned/rnn_title.yaml").read_text())
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=tuned["study"], storage=pg)


# ---------------------------------------------------------------------------------------------- 17
def test_case17_keras_pinned_with_safe_mode_fixes() -> None:
    """Keras is pinned exactly (pyproject and constraints.txt agree) at 3.14 or later, and that is the
    version installed."""
    import importlib.metadata

    from packaging.version import Version

    minimum = Version("3.14")
    pyproject = (ROOT / "pyproject.toml").read_text()
    pins = re.findall(r'"keras==([0-9][^"]*)"', pyproject)
    assert len(pins) == 1, "pyproject.toml must pin keras exactly (keras==X.Y.Z)"
    constraints = re.findall(r"^keras==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert constraints == pins, (constraints, pins)
    assert Version(pins[0]) >= minimum, f"keras {pins[0]} predates the safe_mode fixes"
    installed = Version(importlib.metadata.version("keras"))
    assert installed == Version(pins[0]) and installed >= minimum
