"""Fixtures of the fault tests (helpers are in ``tests/faults_support.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def prefect_api_url(prefect_harness: None) -> str:
    """The session's Prefect test server, for `winnow run` processes to report to (so
    each of them skips starting a temporary server of its own)."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())
