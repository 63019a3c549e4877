"""The PHP translation recipe end to end against the test LLM server (a named test
double), scripted so that every path happens once: Python that fails by itself, right at
once, fixed by revision, a syntax error never fixed, PHP that parses but fails its tests,
tests weakened by the translation, an unfaithful verdict, a malformed answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.recipes.php_translation.recipe import PHPTranslationParams
from winnow.cli import app
from winnow.testing.llm_server import LLMTestServer, Rule, Script

NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def python_row(name: str) -> dict:
    body = "return x + 2" if name == "zeta" else "return x + 1"  # zeta's Python is wrong
    return {
        "id": name,
        "problem": f"Write a Python function `f_{name}(x: int) -> int` returning x plus one.",
        "solution": f"def f_{name}(x: int) -> int:\n    {body}\n",
        "tests": f"assert f_{name}(1) == 2\nassert f_{name}(-1) == 0\n",
    }


def php_answer(name: str, body: str = "return $x + 1;", tests: str | None = None) -> str:
    tests = tests or f"assert(f_{name}(1) === 2);\nassert(f_{name}(-1) === 0);"
    return (
        f"```php\n<?php\ndeclare(strict_types=1);\n\n/** Adds one. */\n"
        f"function f_{name}(int $x): int\n{{\n    {body}\n}}\n```\n```php\n{tests}\n```"
    )


def verdict(same: str) -> str:
    return json.dumps({"same_behaviour": same, "same_tests": "yes", "reason": "compared"})


def script() -> Script:
    weakened = "assert(f_epsilon(1) === 2);\n// assert(f_epsilon(-1) === 0);"
    return Script(
        rules=[
            # faithfulness (its prompt shows the code, not the problem)
            Rule(pattern=r"You compare a PHP translation.*f_eta\(", replies=[verdict("no")]),
            Rule(pattern=r"You compare a PHP translation", replies=[verdict("yes")]),
            # revision
            Rule(pattern=r"You fix PHP 8 code.*f_beta\(", replies=[php_answer("beta")]),
            Rule(pattern=r"You fix PHP 8 code.*f_gamma\(", replies=[php_answer("gamma", "}")]),
            Rule(
                pattern=r"You fix PHP 8 code.*f_delta\(",
                replies=[php_answer("delta", "return $x + 2;")],
            ),
            # translation
            Rule(
                pattern=r"f_alpha\(",
                replies=[
                    php_answer(
                        "alpha",
                        tests="<?php\nrequire_once 'solution.php';\n"
                        "assert(f_alpha(1) === 2);\nassert(f_alpha(-1) === 0);",
                    )
                ],
            ),
            Rule(pattern=r"f_beta\(", replies=[php_answer("beta", "return $x - 1;")]),
            Rule(pattern=r"f_gamma\(", replies=[php_answer("gamma", "return $x + 1")]),
            Rule(pattern=r"f_delta\(", replies=[php_answer("delta", "return $x * 3;")]),
            Rule(pattern=r"f_epsilon\(", replies=[php_answer("epsilon", tests=weakened)]),
            Rule(pattern=r"f_eta\(", replies=[php_answer("eta")]),
            Rule(pattern=r"f_theta\(", replies=["Sorry, I only write Python."]),
        ]
    )


@pytest.fixture
def server():
    with LLMTestServer(script()) as s:
        yield s


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "verified.jsonl"
    path.write_text("".join(json.dumps(python_row(n)) + "\n" for n in NAMES))
    return path


def params(tmp_path: Path, server: LLMTestServer, source: Path) -> PHPTranslationParams:
    return PHPTranslationParams(
        source=str(source),
        out=str(tmp_path / "out"),
        provider="openai-compatible",
        model="test-model",
        base_url=server.base_url,
        max_revision_rounds=1,
        sandbox="bwrap",
        shard_size=3,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_every_path_ends_where_it_should(tmp_path, server, source, prefect_harness) -> None:
    from flows.php_translation import php_translation

    p = params(tmp_path, server, source)
    summary = php_translation(p)
    out = Path(p.out)

    kept = {r["metadata"]["source_id"]: r for r in read_jsonl(out / "dataset.jsonl")}
    assert sorted(kept) == ["alpha", "beta"]
    assert {k: r["metadata"]["revision_rounds"] for k, r in kept.items()} == {
        "alpha": 0,
        "beta": 1,
    }
    alpha = kept["alpha"]
    user, assistant = alpha["messages"]
    assert user["content"].startswith("Write a PHP function `f_alpha")
    assert user["content"].endswith("Write the solution in PHP.")
    assert assistant["content"].startswith("```php\n<?php\ndeclare(strict_types=1);")
    meta = alpha["metadata"]
    assert meta["tests"] == "assert(f_alpha(1) === 2);\nassert(f_alpha(-1) === 0);\n"
    assert (meta["python_assertions"], meta["php_assertions"]) == (2, 2)
    assert meta["faithfulness"]["faithful"] is True
    assert meta["faithfulness"]["model"] == "test-model"
    assert meta["sandbox"] == "bwrap" and meta["python_solution"].startswith("def f_alpha")
    assert meta["provenance"]["template"] == "php_translation/translate"

    rejected = read_jsonl(out / "rejected.jsonl")
    where = {r["record"]["source_id"]: (r["stage"], r["reason"]) for r in rejected}
    assert sorted(where) == ["delta", "epsilon", "eta", "gamma", "theta", "zeta"]
    assert where["zeta"][0] == "python_check"
    assert where["zeta"][1].startswith("python does not pass: execute:")
    assert where["theta"][0] == "translate"
    assert where["theta"][1].startswith("malformed model answer")
    assert where["gamma"][0] == "revision"
    assert where["gamma"][1].startswith("parse: Parse error: ")
    assert where["delta"][0] == "revision"
    assert where["delta"][1].startswith("execute: ") and "AssertionError" in where["delta"][1]
    assert where["epsilon"] == (
        "coverage",
        "tests weakened: 1 PHP assertion(s) for 2 Python assert(s)",
    )
    assert where["eta"][0] == "faithfulness"
    assert where["eta"][1] == "unfaithful: same behaviour no, same tests yes: compared"
    attempts = next(r for r in rejected if r["record"]["source_id"] == "gamma")["record"][
        "attempts"
    ]
    assert [(a["round"], a["stage"]) for a in attempts] == [(0, "parse"), (1, "parse")]

    funnel = json.loads((out / "funnel.json").read_text())
    stages = {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]}
    assert stages == {
        "python_check": (8, 7, 1),
        "translate": (7, 6, 1),
        "execute": (6, 4, 2),
        "coverage": (4, 3, 1),
        "faithfulness": (3, 2, 1),
    }
    assert funnel["kept"] == summary["kept"] == 2
    assert funnel["kept_needing_revision"] == 1 and funnel["passed_execution"] == 4
    # 7 translations + 3 revisions (beta, gamma, delta) + 3 faithfulness verdicts
    assert funnel["llm_calls"] == 13
    assert all(g["success"] for g in funnel["gates"]) and len(funnel["gates"]) == 4

    # What was published passes `winnow verify --language php` on its own.
    cases = "".join(
        json.dumps({"id": r["id"], "solution": _fence(r), "tests": r["metadata"]["tests"]}) + "\n"
        for r in kept.values()
    )
    result = CliRunner().invoke(
        app, ["verify", "--language", "php", "--sandbox", "bwrap"], input=cases
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["passed"] for line in result.stdout.splitlines()] == [True, True]

    # The catalog holds the run, every rejection and the published records.
    from tasks.store.catalog import Catalog

    catalog = Catalog()
    run = catalog.get_run(summary["run_id"])
    assert run["status"] == "completed" and run["recipe"] == "php-translation"
    assert all(s["n_unaccounted"] == 0 for s in catalog.funnel(summary["run_id"]))

    # A re-run reuses every stage: no request reaches the server.
    before = server.stats.chat_requests
    again = php_translation(p)
    assert server.stats.chat_requests == before
    assert again["llm_calls_from_journal"] == again["llm_calls"]


def _fence(example: dict) -> str:
    content = example["messages"][1]["content"]
    return content.removeprefix("```php\n").removesuffix("\n```")


@pytest.mark.slow
def test_winnow_run_php_translation(tmp_path, server, source, prefect_harness) -> None:
    """The registered recipe through the CLI, with --set for the source and the sandbox."""
    out = tmp_path / "cli-out"
    args = ["run", "php-translation", "--provider", "openai-compatible", "--model", "test-model"]
    args += ["--base-url", server.base_url, "--out", str(out)]
    args += ["--set", f"source={source}", "--set", "sandbox=bwrap", "--set", "limit=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out / "dataset.jsonl")
    assert sorted(r["metadata"]["source_id"] for r in kept) == ["alpha", "beta"]
    # Two revision rounds by default off the embedded model: gamma fails both.
    [gamma] = read_jsonl(out / "rejected.jsonl")
    assert gamma["record"]["source_id"] == "gamma" and gamma["detail"]["rounds"] == 2
    assert "kept 2 example(s)" in result.output
