"""A real headless Chromium (Selenium) and a real MLflow server for the UI and report tests.

Tests using ``chrome()`` skip only where Chromium, its driver or Selenium is not installed
(``.ci/run`` installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
# The network is closed: without these Chromium waits on update, sync and QUIC connections.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=2400,1400")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chrome() -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile; skips the test where none is installed."""
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("Chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, cwd: Path, timeout: float = 180) -> Iterator[str]:
    """``mlflow server`` (what ``mlflow ui`` runs) on a free loopback port; yields its base URL."""
    import requests

    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    log = open(cwd / f"mlflow-server-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", backend_uri, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"mlflow server exited: {(cwd / log.name).read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                pytest.fail("mlflow server did not answer /health")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_for(driver: Any, css: str, timeout: float = 60, count: int = 1) -> list[Any]:
    """The elements matching ``css`` once at least ``count`` exist (the UI renders asynchronously)."""
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while True:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if len(found) >= count:
            return found
        if time.time() > deadline:
            raise AssertionError(f"{css!r}: {len(found)} of {count} elements after {timeout}s at {driver.current_url}")
        time.sleep(0.5)
