"""API keys reach the provider and nowhere else.

A unique fake key is planted, once in the environment and once in a Prefect Secret
block; a RAG QA run goes to the test LLM server, which answers only requests that carry
that key (so the key was really used). Then every file of the project (catalog, journal,
shards), the output directory, the result storage, every table of the Prefect database
(logs, artifacts, flow and task run parameters and states) and the captured
stdout/stderr are searched for it.

The runs go to a real Prefect server (``prefect server start``) that asks for an auth
string, as a team's does: the flows reach it only because the string is given, and the
string itself is searched for like the key.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasks.llm.base import ConfigError, ProviderSpec
from tasks.llm.secrets import api_key, forget
from tests.scripted_rag import REQUESTS, documents, script
from winnow.serving import auth
from winnow.serving.server import LocalServer
from winnow.testing.llm_server import LLMTestServer

# The one place a key may live in Prefect's database: the Secret block's own document.
SECRET_TABLES = {"block_document"}


def planted() -> str:
    return f"sk-winnow-planted-{uuid.uuid4().hex}"


def files_holding(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and needle in path.read_bytes():
                hits.append(str(path))
        except OSError:  # a file another process removed meanwhile
            continue
    return hits


AUTH_PASSWORD = f"pw-{uuid.uuid4().hex}"
AUTH_STRING = f"winnow:{AUTH_PASSWORD}"


@pytest.fixture(scope="module")
def authed_prefect(tmp_path_factory) -> Iterator[Path]:
    """A real Prefect server with basic auth on, this process's client given the string;
    the server's SQLite database."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_HOME,
        temporary_settings,
    )

    home = tmp_path_factory.mktemp("authed-prefect-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(home))
    patch.setenv(auth.SERVER_ENV, AUTH_STRING)
    # The database apart from PREFECT_HOME (scanned as files): it is read through SQLite.
    db = tmp_path_factory.mktemp("authed-prefect-db") / "prefect.db"
    patch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{db}")
    try:
        with LocalServer(log=home / "server.log") as server:
            patch.delenv(auth.SERVER_ENV)  # the flows are clients: they get the client's
            patch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL")
            response = httpx.post(f"{server.api_url}/deployments/filter", json={}, timeout=30)
            assert response.status_code == 401  # auth really is on
            updates = {
                PREFECT_API_URL: server.api_url,
                PREFECT_API_AUTH_STRING: AUTH_STRING,
                PREFECT_HOME: str(home),
            }
            with temporary_settings(updates=updates):
                yield db
    finally:
        patch.undo()


@pytest.fixture
def prefect_db(authed_prefect: Path) -> Path:
    assert authed_prefect.is_file(), authed_prefect
    return authed_prefect


def db_rows_holding(db: Path, needle: str) -> list[str]:
    """``table.column`` of every row value containing ``needle``, Secret blocks aside.
    Read through SQLite (not the file bytes) so rows still in the WAL are seen too."""
    hits = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            if table in SECRET_TABLES:
                continue
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                query = (
                    f'SELECT COUNT(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0'
                )
                if conn.execute(query, (needle,)).fetchone()[0]:
                    hits.append(f"{table}.{column}")
    return hits


def where_is(key: str, places: list[Path], captured: str, db: Path) -> list[str]:
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # logs reach the database in batches
    found = []
    for place in places:
        if place.exists():
            found += files_holding(place, key.encode())
    found += [f"db:{hit}" for hit in db_rows_holding(db, key)]
    if key in captured:
        found.append("stdout/stderr")
    return found


def run_recipe(tmp_path: Path, base_url: str, **fields):
    from flows.rag_qa import rag_qa
    from tasks.recipes.rag_qa.recipe import RAGQAParams

    params = RAGQAParams(
        out=str(tmp_path / "out"),
        model="test-model",
        base_url=base_url,
        documents=str(documents(tmp_path / "docs")),
        questions_per_passage=4,
        judges=1,
        **fields,
    )
    return rag_qa(params)


def storage_places(tmp_path: Path, project_dir: Path) -> list[Path]:
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH

    return [
        project_dir,
        tmp_path / "out",
        Path(PREFECT_LOCAL_STORAGE_PATH.value()),  # task results, if any were persisted
        Path(PREFECT_HOME.value()),
    ]


def run_and_scan(tmp_path: Path, project_dir: Path, capfd, db: Path, key: str, **fields) -> None:
    """A run against a server that answers only ``key``, then the search for ``key`` and
    for the Prefect server's auth password."""
    with LLMTestServer(script(api_key=key)) as server:
        summary = run_recipe(tmp_path, server.base_url, **fields)
        assert server.stats.unauthorized == 0
        assert server.stats.chat_requests == REQUESTS
    assert summary["kept"] == 4
    out, err = capfd.readouterr()
    found = where_is(key, storage_places(tmp_path, project_dir), out + err, db)
    assert not found, f"the planted key was written to: {found}"
    found = where_is(AUTH_PASSWORD, storage_places(tmp_path, project_dir), out + err, db)
    assert not found, f"the server's auth string was written to: {found}"


@pytest.mark.slow
def test_a_key_from_the_environment_is_used_and_never_stored(
    tmp_path, project_dir, monkeypatch, capfd, prefect_db
) -> None:
    key = planted()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    run_and_scan(tmp_path, project_dir, capfd, prefect_db, key, provider="openai")


@pytest.mark.slow
def test_a_key_from_a_secret_block_is_used_and_never_stored(
    tmp_path, project_dir, monkeypatch, capfd, prefect_db
) -> None:
    from prefect.blocks.system import Secret

    key = planted()
    name = f"llm-key-{uuid.uuid4().hex[:8]}"
    Secret(value=key).save(name)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    forget()
    run_and_scan(
        tmp_path,
        project_dir,
        capfd,
        prefect_db,
        key,
        provider="openai-compatible",
        api_key_secret=name,
    )
    # the run's parameters in the catalog carry the block's name, never the key
    from tasks.store.catalog import Catalog

    (run,) = Catalog().runs()
    assert run["params"]["api_key_secret"] == name


@pytest.mark.slow
def test_a_wrong_key_is_refused_before_any_request(tmp_path, monkeypatch, prefect_db) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", planted())
    with LLMTestServer(script(api_key=planted())) as server:
        with pytest.raises(ConfigError, match="rejected the API key"):
            run_recipe(tmp_path, server.base_url, provider="openai")
        assert server.stats.chat_requests == 0 and server.stats.unauthorized >= 1


def test_key_sources(monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "from-env")
    assert api_key(ProviderSpec(kind="openai-compatible", api_key_env="MY_KEY"), None) == "from-env"
    assert api_key(ProviderSpec(kind="openai-compatible"), None) is None
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        api_key(ProviderSpec(kind="openai-compatible", api_key_env="MY_KEY"), None)
    assert os.environ.get("MY_KEY") is None


def test_judge_uses_the_generator_secret_only_for_the_same_provider() -> None:
    from tasks.pipeline.params import ProviderParams

    same = ProviderParams(provider="openai", api_key_secret="gen")
    assert same.judge().api_key_secret == "gen"
    other = ProviderParams(provider="openai", api_key_secret="gen", judge_provider="anthropic")
    assert other.judge().api_key_secret is None
    own = ProviderParams(provider="openai", judge_api_key_secret="judge")
    assert (own.generator().api_key_secret, own.judge().api_key_secret) == (None, "judge")


@pytest.mark.slow
def test_the_scan_finds_a_key_that_was_written(tmp_path, project_dir, capfd, prefect_db) -> None:
    """The scan itself: a key logged, put in an artifact and in a project file is found."""
    from prefect import flow, get_run_logger
    from prefect.artifacts import create_markdown_artifact

    key = planted()

    @flow
    def leaky(value: str) -> None:
        get_run_logger().warning("key=%s", value)
        create_markdown_artifact(markdown=f"key {value}", key="leak")

    leaky(key)
    (project_dir / ".winnow").mkdir(exist_ok=True)
    (project_dir / ".winnow" / "leak.txt").write_text(key)
    out, err = capfd.readouterr()
    found = where_is(key, storage_places(tmp_path, project_dir), out + err, prefect_db)
    assert "db:log.message" in found
    assert "db:artifact.data" in found
    assert "db:flow_run.parameters" in found
    assert str(project_dir / ".winnow" / "leak.txt") in found
