"""Code SFT on the user's own problems (a Parquet file here), through `winnow run` with
`--set problems=PATH --set problem_field=NAME --set tests_field=NAME`, against the test
LLM server (a named test double): no problem is generated, the reference tests run
beside each candidate's own, and every example names its input row."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from winnow.cli import app
from winnow.testing.llm_server import LLMTestServer, Rule, Script


def answer(name: str, body: str) -> str:
    return (
        f"Adds one.\n```python\ndef f_{name}(x: int) -> int:\n    # add one\n    {body}\n```\n"
        f"```python\nassert f_{name}(1) == 2\nassert f_{name}(-1) == 0\n```"
    )


JUDGE_PASS = json.dumps({"correctness": "pass", "style": "pass", "reason": "fine"})
# beta's code passes its own tests (1 and -1) but not the reference test at 10
WRONG_BETA = answer("beta", "return x + 1 if x < 5 else x")


def judged(*rules: Rule) -> Script:
    """A script whose judge passes everything, then ``rules`` (revisions first)."""
    return Script(rules=[Rule(pattern=r"Grade two things", replies=[JUDGE_PASS]), *rules])


def script() -> Script:
    return judged(
        Rule(pattern=r"failed its checks.*\[beta\]", replies=[WRONG_BETA]),
        Rule(pattern=r"\[alpha\]", replies=[answer("alpha", "return x + 1")]),
        Rule(pattern=r"\[beta\]", replies=[WRONG_BETA]),
    )


@pytest.fixture
def server():
    with LLMTestServer(script()) as s:
        yield s


def statement(name: str) -> str:
    return f"Write `f_{name}(x: int) -> int` returning x plus one. [{name}]"


@pytest.mark.slow
def test_code_sft_on_your_own_problems(tmp_path: Path, server, prefect_harness) -> None:
    problems = tmp_path / "problems.parquet"
    rows = [
        {"id": "mine-7", "question": statement("alpha"), "checks": ["assert f_alpha(10) == 11"]},
        {"id": None, "question": statement("beta"), "checks": ["assert f_beta(10) == 11"]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), problems)
    out = tmp_path / "out"
    args = ["run", "code-sft", "--provider", "openai-compatible", "--model", "test-model"]
    args += ["--base-url", server.base_url, "--out", str(out)]
    args += ["--set", f"problems={problems}", "--set", "problem_field=question"]
    args += ["--set", "tests_field=checks", "--set", "n_solutions=1", "--set", "sandbox=bwrap"]
    args += ["--set", "max_revision_rounds=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    # no request wrote a problem: 2 solutions, 1 revision (beta), 1 judgement (alpha)
    assert server.stats.chat_requests == 4
    [kept] = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert kept["messages"][0]["content"] == statement("alpha")
    assert kept["metadata"]["source_id"] == "mine-7"
    assert kept["metadata"]["passed_reference_tests"] is True
    assert "f_alpha(10)" not in kept["messages"][1]["content"]  # reference tests stay hidden

    [beta] = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert beta["record"]["source_id"] == "2"  # no id: its row number
    assert beta["stage"] == "revision"
    assert beta["reason"] == "execute: AssertionError: assert f_beta(10) == 11 (exit code 1)"


# Three candidates of one problem. A: right code, right tests. B: right code, a test
# expecting a wrong value (its revision corrects the value). C: wrong code with tests
# written to match it (it passes them); its revision drops a test, which is refused.
def gamma(body: str, tests: str) -> str:
    code = f"def f_gamma(x: int) -> int:\n    {body}"
    return f"Adds one.\n```python\n{code}\n```\n```python\n{tests}\n```"


A = gamma("return x + 1", "assert f_gamma(1) == 2\nassert f_gamma(-1) == 0")
B = gamma("return 1 + x", "assert f_gamma(1) == 2\nassert f_gamma(5) == 7")
C = gamma("return x + 2", "assert f_gamma(1) == 3\nassert f_gamma(0) == 2")
B_FIXED = gamma("return 1 + x", "assert f_gamma(1) == 2\nassert f_gamma(5) == 6")
C_WEAKER = gamma("return x + 1 + 0", "assert f_gamma(1) == 2")


def agreement_script() -> Script:
    return judged(
        Rule(pattern=r"failed its checks.*f_gamma\(5\) == 7", replies=[B_FIXED]),
        Rule(pattern=r"failed its checks.*f_gamma\(0\) == 2", replies=[C_WEAKER]),
        Rule(pattern=r"\[gamma\]", replies=[A, B, C]),
    )


def own_problems(tmp_path: Path, server: LLMTestServer, problems: Path, **more: object):
    from tasks.recipes.code_sft.recipe import CodeSFTParams

    return CodeSFTParams(
        out=str(tmp_path / "out"),
        provider="openai-compatible",
        model="test-model",
        base_url=server.base_url,
        problems=str(problems),
        sandbox="bwrap",
        **more,
    )


@pytest.mark.slow
def test_dual_agreement_judges_the_tests(tmp_path: Path, prefect_harness) -> None:
    from flows.code_sft import code_sft

    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "g", "problem": statement("gamma")}) + "\n")
    with LLMTestServer(agreement_script()) as server:
        params = own_problems(tmp_path, server, problems, n_solutions=3, max_revision_rounds=1)
        summary = code_sft(params)
        out = Path(params.out)
        kept = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
        by_tests = {k["metadata"]["tests"].strip(): k["metadata"] for k in kept}
        assert set(by_tests) == {
            "assert f_gamma(1) == 2\nassert f_gamma(-1) == 0",  # A, as written
            "assert f_gamma(1) == 2\nassert f_gamma(5) == 6",  # B, its test repaired
        }
        b = by_tests["assert f_gamma(1) == 2\nassert f_gamma(5) == 6"]
        assert b["revision_rounds"] == 1 and b["tests_revised"] is True
        assert b["agreement"]["in_consensus"] and b["agreement"]["suspect"] == [
            "assert f_gamma(5) == 7"
        ]
        [c] = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
        assert c["stage"] == "revision" and "f_gamma(1) == 3" in c["reason"]
        assert c["record"]["tests_refused"] == [
            "revised tests are weaker: 1 cases where there were 2"
        ]
        assert not c["record"]["agreement"]["in_consensus"]
        assert summary["kept_with_tests_repaired"] == 1 and summary["kept_needing_revision"] == 1

        # Without dual agreement the wrong code and its matching tests are kept, and B's
        # test is still repaired (the revision prompt allows it) but without the evidence.
        loose = code_sft(params.model_copy(update={"dual_agreement": False}))
        kept = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
        assert any("x + 2" in k["messages"][1]["content"] for k in kept)
        assert loose["kept"] == 3


# Two candidates of one problem that contradict each other, and no third to settle it.
D_RIGHT = "Adds one.\n```python\ndef f_delta(x: int) -> int:\n    return x + 1\n```\n" + (
    "```python\nassert f_delta(1) == 2\n```"
)
D_WRONG = D_RIGHT.replace("x + 1", "x + 2").replace("== 2", "== 3")


@pytest.mark.slow
def test_candidates_that_contradict_each_other_with_no_consensus_are_rejected(
    tmp_path: Path, prefect_harness
) -> None:
    from flows.code_sft import code_sft

    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "d", "problem": statement("delta")}) + "\n")
    script = judged(Rule(pattern=r"\[delta\]", replies=[D_RIGHT, D_WRONG]))
    with LLMTestServer(script) as server:
        # min_kept=0: this run is meant to keep nothing, and still succeed
        params = own_problems(
            tmp_path, server, problems, n_solutions=2, max_revision_rounds=1, min_kept=0
        )
        summary = code_sft(params)
        out = Path(params.out)
        rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
        assert summary["kept"] == 0 and len(rejected) == 2
        assert {r["stage"] for r in rejected} == {"execute"}
        assert all(
            r["reason"].startswith("disputed: no two of 2 solutions agree") for r in rejected
        )
        assert {r["detail"]["disputed"][0] for r in rejected} == {
            "assert f_delta(1) == 2",
            "assert f_delta(1) == 3",
        }
        assert server.stats.chat_requests == 2  # no revision, no judge was paid for

        # turned off, each passes its own test and both are kept
        loose = code_sft(params.model_copy(update={"reject_disputed": False}))
        assert loose["kept"] == 2


@pytest.mark.slow
def test_a_critical_diversity_gate_stops_same_problems_before_any_solution(
    tmp_path: Path, server, prefect_harness
) -> None:
    from flows.code_sft import code_sft
    from tasks.gates.gx import GateFailed

    problems = tmp_path / "same.jsonl"
    same = [f"Write `f_t{i:03d}(x: int) -> int` returning x plus {i}." for i in range(8)]
    problems.write_text("".join(json.dumps({"problem": p}) + "\n" for p in same))
    params = own_problems(tmp_path, server, problems, diversity_gate="critical")
    with pytest.raises(GateFailed, match="code_sft.diversity"):
        code_sft(params)
    assert server.stats.chat_requests == 0
    assert not (tmp_path / "out").exists()
