"""Shared test setup.

Every test gets its own project directory (catalog, journal, shards) and the embedded
model cache is shared. Fixture modules live in ``tests/plugins/`` and are loaded here,
so each part of the code base keeps its fixtures next to nothing else's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

pytest_plugins = sorted(
    f"tests.plugins.{p.stem}"
    for p in (Path(__file__).parent / "plugins").glob("*.py")
    if p.stem != "__init__"
)


@pytest.fixture(autouse=True)
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh Winnow project directory per test."""
    path = tmp_path / "project"
    path.mkdir()
    monkeypatch.setenv("WINNOW_PROJECT_DIR", str(path))
    return path
