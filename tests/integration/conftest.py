"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest
from store import build_store


@pytest.fixture(scope="session")
def pipeline_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The store of one small real pipeline run (see tests/store.py), built once per session."""
    return build_store(tmp_path_factory.mktemp("store"))
