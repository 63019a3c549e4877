"""Fixtures of the fault tests (helpers are in ``tests/faults_support.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture
def prefect_api_url(prefect_harness: None) -> str:
    """The session's Prefect test server, for `winnow run` processes to report to (so
    each of them skips starting a temporary server of its own)."""
    return _api_url()


@pytest.fixture(scope="session")
def code_sft_reference(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One uninterrupted `winnow run code-sft` (``faults_support.code_sft_args``) against
    the scripted test LLM server, for fault tests to compare with: its dataset
    (``dataset_view``) and the server-side keys of the requests it made."""
    from tests.faults_support import (
        answered,
        code_sft_args,
        dataset_view,
        finish,
        journal_wire_keys,
        start_run,
        winnow_env,
    )
    from tests.recipes.test_code_sft_flow import script
    from winnow.testing.llm_server import LLMTestServer

    tmp: Path = tmp_path_factory.mktemp("code-sft-reference")
    out, project = tmp / "out", tmp / "project"
    with LLMTestServer(script()) as server:
        proc = start_run(code_sft_args(tmp, server.base_url, out), winnow_env(project, _api_url()))
        code, _, err = finish(proc)
        assert code == 0, err[-3000:]
        keys = set(answered(server.stats))
        # The journal maps exactly onto what the server answered: the key mapping holds.
        assert journal_wire_keys(project, server.base_url) == keys
        assert server.stats.chat_requests == len(keys)  # uninterrupted: each sent once
    view = dataset_view(out)
    assert view["dataset.jsonl"], "the reference run kept nothing"
    return {"view": view, "keys": keys}
