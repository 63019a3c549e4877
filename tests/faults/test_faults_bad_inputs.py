"""Bad inputs to `winnow run`: each is a one-line error naming the problem and exit
status 2, before any chat request reaches the LLM server, and with nothing published.

Table-driven through the CLI (``CliRunner``) against the scripted test LLM server (a
named test double); the flow-level cases run the real recipe flow up to its plan, so
they need the Prefect test harness.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.core.paths import expectations_dir
from winnow.cli import app
from winnow.testing.llm_server import LLMTestServer


@dataclass
class Case:
    name: str
    args: list[str]  # after `winnow run`; {url} is the test server, {tmp} the test's dir
    words: list[str]  # each must appear in the error output
    files: dict[str, str] = field(default_factory=dict)  # written under {tmp} first
    env: dict[str, str] = field(default_factory=dict)  # {tmp} expanded too
    unset: list[str] = field(default_factory=list)
    prepare: Callable[[Path], None] | None = None


def broken_suites(tmp: Path) -> None:
    """A copy of the shipped expectations with one suite that does not parse."""
    target = tmp / "expectations"
    shutil.copytree(expectations_dir(), target)
    (target / "rag_qa.answers.json").write_text('{"name": "rag_qa.answers", "severity": ')


SERVER = ["--provider", "openai-compatible", "--base-url", "{url}", "--model", "test-model"]
DOCS = ["--set", "documents={tmp}/docs"]

CASES = [
    Case(
        "invalid parameter value",
        ["rag-qa", *SERVER, "--set", "judges=0"],
        ["invalid parameters", "judges", "greater than or equal to 1"],
    ),
    Case(
        "parameter of the wrong type",
        ["code-sft", *SERVER, "--set", "n_problems=many"],
        ["invalid parameters", "n_problems", "many"],
    ),
    Case(
        "unknown parameter",
        ["rag-qa", *SERVER, "--set", "jugdes=3"],
        ["unknown parameter", "jugdes"],
    ),
    Case("unknown recipe", ["code-fst", *SERVER], ["unknown recipe", "code-fst", "code-sft"]),
    Case(
        "unknown provider",
        ["rag-qa", "--provider", "bogus-ai", "--model", "m"],
        ["invalid parameters", "provider", "bogus-ai"],
    ),
    Case(
        "unknown judge provider",
        ["rag-qa", *SERVER, "--judge-provider", "bogus-ai"],
        ["invalid parameters", "judge_provider", "bogus-ai"],
    ),
    Case(
        "missing OpenAI key",
        ["rag-qa", "--provider", "openai", "--model", "gpt-4o-mini"],
        ["OPENAI_API_KEY"],
        unset=["OPENAI_API_KEY"],
    ),
    Case(
        "missing Anthropic key",
        ["code-sft", "--provider", "anthropic", "--model", "claude-haiku-4-5"],
        ["ANTHROPIC_API_KEY"],
        unset=["ANTHROPIC_API_KEY"],
    ),
    Case(
        "unknown model on an OpenAI-compatible server",
        ["rag-qa", "--provider", "openai-compatible", "--base-url", "{url}", "--model", "gpt-9"],
        ["unknown model", "gpt-9", "test-model"],
    ),
    Case(
        "unreachable server",
        ["rag-qa", "--provider", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1"],
        ["cannot reach", "127.0.0.1:9", "connection refused"],
    ),
    Case(
        "empty documents file",
        ["rag-qa", *SERVER, "--set", "documents={tmp}/empty.jsonl"],
        ["empty.jsonl"],
        files={"empty.jsonl": ""},
    ),
    Case(
        "malformed JSONL documents",
        ["rag-qa", *SERVER, "--set", "documents={tmp}/bad.jsonl"],
        ["bad.jsonl:2", "not valid JSON"],
        files={"bad.jsonl": json.dumps({"text": "fine " * 40}) + "\n{not json\n"},
    ),
    Case(
        "missing documents",
        ["rag-qa", *SERVER, "--set", "documents={tmp}/nowhere"],
        ["documents not found", "nowhere"],
    ),
    Case(
        "empty topics file",
        ["code-sft", *SERVER, "--set", "topics_file={tmp}/topics.txt", "--set", "sandbox=bwrap"],
        ["topics.txt", "no topics"],
        files={"topics.txt": "\n\n"},
    ),
    Case(
        "expectation suite that does not parse",
        ["rag-qa", *SERVER],
        ["rag_qa.answers.json", "not valid JSON"],
        env={"WINNOW_EXPECTATIONS_DIR": "{tmp}/expectations"},
        prepare=broken_suites,
    ),
    Case(
        "expectation suite missing",
        ["rag-qa", *SERVER],
        ["rag_qa.questions"],
        env={"WINNOW_EXPECTATIONS_DIR": "{tmp}/no-suites"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_bad_input_is_a_clear_error_before_any_request(
    case: Case,
    tmp_path: Path,
    llm_server: LLMTestServer,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: None,
) -> None:
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    if case.prepare:
        case.prepare(tmp_path)
    for name in case.unset:
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    out = tmp_path / "out"
    args = [a.format(url=llm_server.base_url, tmp=tmp_path) for a in case.args]

    result = CliRunner().invoke(app, ["run", *args, "--out", str(out)])

    text = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "error:" in text, text
    for word in case.words:
        assert word in text, f"{word!r} not in: {text}"
    assert "Traceback" not in result.output
    assert llm_server.stats.chat_requests == 0
    assert not out.exists(), "nothing may be published"
    assert not list(tmp_path.glob(".out*")), "no temp dataset may be left"
