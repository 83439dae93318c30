"""Start an MLflow tracking server safely (``newsrnn server``).

The rules, checked before anything starts:

- The server binds ``127.0.0.1`` unless told otherwise.
- Binding any other address (``0.0.0.0``, a LAN IP, a host name) exposes the registry and every
  run to the network, so it requires MLflow's basic-auth app (``--app-name basic-auth``) *and* an
  explicit ``--allowed-hosts`` list (the Host headers to accept; ``*`` is refused), which guards
  against DNS rebinding. Otherwise a ``ServerConfigError`` names the missing option.
- With basic-auth the admin password comes from the environment (``MLFLOW_AUTH_ADMIN_PASSWORD``),
  never from a file or the command line; the auth database lives in ``--auth-dir`` and users get
  no permission by default.

Use ``add_arguments`` + ``run`` to wire it into a CLI, or ``python -m newsrnn.server``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from newsrnn.errors import ServerConfigError

AUTH_APP = "basic-auth"
ENV_ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"
ENV_AUTH_CONFIG = "MLFLOW_AUTH_CONFIG_PATH"
ENV_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServerOptions:
    """How to run ``mlflow server``."""

    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str = "sqlite:///mlflow.db"
    artifacts_destination: str = "mlartifacts"
    app_name: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    workers: int = 1
    auth_dir: str = ".mlflow-auth"
    extra_env: dict[str, str] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def validate(opts: ServerOptions) -> None:
    """Raise ServerConfigError if ``opts`` would expose an unauthenticated or unrestricted server."""
    if not 1 <= opts.port <= 65535:
        raise ServerConfigError(f"--port: expected 1-65535, got {opts.port}")
    if opts.workers < 1:
        raise ServerConfigError(f"--workers: expected an integer >= 1, got {opts.workers}")
    if opts.app_name not in (None, AUTH_APP):
        raise ServerConfigError(f"--app-name: only {AUTH_APP!r} is supported, got {opts.app_name!r}")
    if "*" in opts.allowed_hosts:
        raise ServerConfigError("--allowed-hosts: '*' accepts every Host header; list the real host names")
    if is_loopback(opts.host):
        return
    missing = []
    if opts.app_name != AUTH_APP:
        missing.append(f"--app-name {AUTH_APP}")
    if not opts.allowed_hosts:
        missing.append("--allowed-hosts HOST[,HOST...]")
    if missing:
        raise ServerConfigError(
            f"--host {opts.host}: binding a non-loopback address exposes the tracking server to the "
            f"network; it also needs {' and '.join(missing)} (or bind 127.0.0.1, the default)"
        )


def auth_config_file(opts: ServerOptions) -> Path:
    """Write the basic-auth config (no password inside) into ``auth_dir``; return its path."""
    auth_dir = Path(opts.auth_dir).resolve()
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = auth_dir / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{auth_dir / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
        encoding="utf-8",
    )
    return path


def server_command(opts: ServerOptions) -> list[str]:
    """The ``mlflow server`` argv for ``opts`` (validated first)."""
    validate(opts)
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--host", opts.host, "--port", str(opts.port),
           "--backend-store-uri", opts.backend_store_uri,
           "--artifacts-destination", opts.artifacts_destination,
           "--workers", str(opts.workers)]
    if opts.app_name:
        cmd += ["--app-name", opts.app_name]
    if opts.allowed_hosts:
        cmd += ["--allowed-hosts", ",".join(opts.allowed_hosts)]
    return cmd


def server_env(opts: ServerOptions, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: telemetry off and, with auth, the config path (password from env)."""
    env = {**(os.environ if base is None else base), **opts.extra_env}
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if opts.app_name == AUTH_APP:
        auth_db = Path(opts.auth_dir).resolve() / "basic_auth.db"
        if not env.get(ENV_ADMIN_PASSWORD) and not auth_db.exists():
            raise ServerConfigError(
                f"--app-name {AUTH_APP}: set {ENV_ADMIN_PASSWORD} in the environment to create the "
                "admin user on first start (it is never read from params.yaml or the command line)"
            )
        import importlib.util

        if importlib.util.find_spec("flask_wtf") is None:
            raise ServerConfigError(f"--app-name {AUTH_APP}: MLflow's auth app needs Flask-WTF; "
                                    "install mlflow[auth] (same version as mlflow)")
        env[ENV_AUTH_CONFIG] = str(auth_config_file(opts))
        # CSRF key for the auth app's forms: from the environment (to share it between servers), else a
        # fresh random one for this process only; never written anywhere.
        if not env.get(ENV_SECRET_KEY):
            env[ENV_SECRET_KEY] = secrets.token_hex(32)
    return env


def start_server(opts: ServerOptions, cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None, log: str | os.PathLike[str] | None = None
                 ) -> subprocess.Popen[bytes]:
    """Validate ``opts`` and start ``mlflow server`` in the background; returns the process.

    Output goes to ``log`` when given (else it is inherited). The caller stops the process.
    """
    cmd = server_command(opts)
    full_env = server_env(opts, env)
    out = open(log, "ab") if log is not None else None  # the child keeps its own descriptor
    try:
        return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT if out else None, start_new_session=True)
    finally:
        if out is not None:
            out.close()


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url``/health until it answers 200; raise RuntimeError on timeout or if ``proc`` exits."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {url} not ready after {timeout:.0f}s ({last})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``newsrnn server`` options."""
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs --app-name basic-auth "
                        "and --allowed-hosts)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--backend-store-uri", default="sqlite:///mlflow.db")
    p.add_argument("--artifacts-destination", default="mlartifacts")
    p.add_argument("--app-name", choices=[AUTH_APP], default=None,
                   help=f"MLflow app; {AUTH_APP} requires {ENV_ADMIN_PASSWORD} in the environment")
    p.add_argument("--allowed-hosts", default="",
                   help="comma-separated Host headers to accept (required off loopback; '*' refused)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--auth-dir", default=".mlflow-auth", help="where the basic-auth user database lives")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    """ServerOptions from parsed ``add_arguments`` options."""
    hosts = tuple(h.strip() for h in (args.allowed_hosts or "").split(",") if h.strip())
    return ServerOptions(host=args.host, port=args.port, backend_store_uri=args.backend_store_uri,
                         artifacts_destination=args.artifacts_destination, app_name=args.app_name,
                         allowed_hosts=hosts, workers=args.workers, auth_dir=args.auth_dir)


def run(args: argparse.Namespace) -> int:
    """Run the server in the foreground until it exits or Ctrl-C; raises ServerConfigError if unsafe."""
    opts = options_from_args(args)
    proc = start_server(opts)
    print(f"newsrnn server: MLflow at http://{opts.host}:{opts.port}"
          f"{' (basic-auth)' if opts.app_name else ''}; Ctrl-C stops it", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m newsrnn.server [options]``."""
    parser = argparse.ArgumentParser(prog="newsrnn server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ServerConfigError as exc:
        print(f"newsrnn server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
