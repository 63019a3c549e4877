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
# A `winnow` command started by a test without PREFECT_API_URL uses Prefect's temporary
# server, stopped with it, not the background server a user's first run starts (which
# would outlive the test); tests/ops/test_background_server.py tests that one.
os.environ.setdefault("WINNOW_PREFECT_SERVER", "per-run")

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


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model's file; skipped where it is not installed, except in CI."""
    try:
        from tasks.llm.embedded_model import resolve_model_path

        return Path(resolve_model_path())
    except Exception as exc:  # not installed on this machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"embedded model not installed ({exc}); run `winnow model`")
