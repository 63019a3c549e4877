"""`winnow push RUN_ID REPO_ID` against the Hub test double (winnow/testing/hub_server.py:
the routes huggingface_hub calls, not the Hub), and `winnow show RUN_ID --open`."""

from __future__ import annotations

import json
import logging
import webbrowser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.pipeline.published import RUN_ID, publish_folder
from winnow.cli import app
from winnow.testing.hub_server import HubTestServer

TOKEN = "hf_TESTtoken_never_printed_4f9c"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def hub():
    with HubTestServer(TOKEN) as server:
        yield server


def test_push_uploads_the_published_folder(tmp_path, hub, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    out = publish_folder(tmp_path / "out")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, output = cli("push", RUN_ID[:12], "my-org/code-sft", "--endpoint", hub.base_url)
    assert code == 0, output
    assert "my-org/code-sft" in output and "/commit/" in output

    repo = hub.hub.repos["my-org/code-sft"]
    assert repo.kind == "dataset"
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(repo.files) == {*manifest["files"], "manifest.json"}
    for name, data in repo.files.items():
        assert data == (out / name).read_bytes(), name
    assert "README.md" in repo.files and "report.html" in repo.files
    # every request carried the token, and only there
    paths = [r.path for r in hub.hub.requests]
    assert paths == [
        "/api/repos/create",
        "/api/validate-yaml",
        "/api/datasets/my-org/code-sft/preupload/main",
        "/api/datasets/my-org/code-sft/commit/main",
    ]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in hub.hub.requests)
    assert hub.hub.unexpected == []
    assert TOKEN not in output and TOKEN not in caplog.text

    # a second push to the same repo: the repo exists (409, accepted), a new commit
    code, output = cli("push", RUN_ID, "my-org/code-sft", "--endpoint", hub.base_url)
    assert code == 0, output
    assert len(repo.commits) == 2


def test_a_wrong_token_is_refused_and_not_printed(tmp_path, hub, monkeypatch) -> None:
    publish_folder(tmp_path / "out")
    wrong = "hf_WRONGtoken_also_secret_77"
    monkeypatch.setenv("HF_TOKEN", wrong)
    code, output = cli("push", RUN_ID, "me/data", "--endpoint", hub.base_url)
    assert code == 2 and "refused" in output
    assert wrong not in output
    assert hub.hub.repos == {}


def test_a_folder_changed_since_publishing_is_not_pushed(tmp_path, hub, monkeypatch) -> None:
    out = publish_folder(tmp_path / "out")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with (out / "dataset.jsonl").open("a") as fh:
        fh.write('{"messages": []}\n')
    code, output = cli("push", RUN_ID, "me/data", "--endpoint", hub.base_url)
    assert code == 2 and "changed since it was published" in output
    assert hub.hub.requests == []


def test_no_token_says_where_to_put_one(tmp_path, hub, monkeypatch) -> None:
    publish_folder(tmp_path / "out")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no saved login either
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    code, output = cli("push", RUN_ID, "me/data", "--endpoint", hub.base_url)
    assert code == 2 and "HF_TOKEN" in output
    assert hub.hub.requests == []


def test_push_needs_a_completed_run(tmp_path, hub) -> None:
    code, output = cli("push", "no-such-run", "me/data", "--endpoint", hub.base_url)
    assert code == 2 and "no run" in output


def test_show_open_opens_the_report(tmp_path, monkeypatch) -> None:
    out = publish_folder(tmp_path / "out")
    opened: list[str] = []  # a stand-in for the user's browser
    monkeypatch.setattr(webbrowser, "open", lambda uri: opened.append(uri) or True)
    code, output = cli("show", RUN_ID, "--open")
    assert code == 0, output
    assert opened == [(out / "report.html").as_uri()]
    assert "report.html" in output

    monkeypatch.setattr(webbrowser, "open", lambda uri: False)  # no browser here
    code, output = cli("show", RUN_ID, "--open")
    assert code == 0 and "no browser" in output and str(out) in output.replace("\n", "")

    code, output = cli("show", RUN_ID, "--json")
    assert json.loads(output)["report"] == str(out / "report.html")


def test_show_open_without_a_report_says_so(tmp_path: Path) -> None:
    from tasks.store.catalog import Catalog

    Catalog().start_run("r-failed", "code-sft", {}, out_dir=tmp_path / "never")
    Catalog().finish_run("r-failed", "failed")
    code, output = cli("show", "r-failed", "--open")
    assert code == 2 and "has no report.html" in output


@pytest.mark.slow
def test_push_takes_the_token_from_a_prefect_secret_block(
    tmp_path, hub, monkeypatch, prefect_harness
) -> None:
    from prefect.blocks.system import Secret

    from tasks.llm import secrets

    publish_folder(tmp_path / "out")
    monkeypatch.setenv("HF_TOKEN", "hf_not_this_one")  # the named block wins
    Secret(value=TOKEN).save("hub-token", overwrite=True)
    secrets.forget()
    try:
        code, output = cli(
            "push", RUN_ID, "me/data", "--token-secret", "hub-token", "--endpoint", hub.base_url
        )
    finally:
        secrets.forget()
    assert code == 0, output
    assert all(r.authorization == f"Bearer {TOKEN}" for r in hub.hub.requests)
    assert TOKEN not in output
    code, output = cli(
        "push", RUN_ID, "me/data", "--token-secret", "nope", "--endpoint", hub.base_url
    )
    assert code == 2 and "no Prefect Secret block named 'nope'" in output
