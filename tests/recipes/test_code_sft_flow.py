"""The code SFT recipe end to end against the test LLM server (a named test double),
scripted so that every path happens once: right at once, fixed by revision, never fixed,
failing lint, failing the judge, a malformed answer, a duplicate problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.recipes.code_sft.recipe import CodeSFTParams
from winnow.testing.llm_server import LLMTestServer, Rule, Script


def problem(name: str) -> str:
    return json.dumps(
        {
            "title": name,
            "problem": f"Write `f_{name}(x: int) -> int` returning x plus one. [{name}]",
        }
    )


def answer(name: str, body: str = "return x + 1", tests: str | None = None) -> str:
    tests = tests or f"assert f_{name}(1) == 2\nassert f_{name}(-1) == 0"
    return (
        f"Adds one.\n```python\ndef f_{name}(x: int) -> int:\n    # add one\n    {body}\n```\n"
        f"```python\n{tests}\n```"
    )


JUDGE_PASS = json.dumps({"correctness": "pass", "style": "pass", "reason": "fine"})
JUDGE_FAIL = json.dumps({"correctness": "pass", "style": "fail", "reason": "cryptic names"})

TOPICS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]


def script() -> Script:
    rules = [
        # judge (its prompt holds the problem, so it comes before the solution rules)
        Rule(pattern=r"Grade two things.*\[epsilon\]", replies=[JUDGE_FAIL]),
        Rule(pattern=r"Grade two things", replies=[JUDGE_PASS]),
        # revision
        Rule(pattern=r"failed its checks.*\[beta\]", replies=[answer("beta")]),
        Rule(pattern=r"failed its checks.*\[gamma\]", replies=[answer("gamma", "return x + 2")]),
        Rule(
            pattern=r"failed its checks.*\[delta\]",
            replies=[answer("delta", "import os\n    return x + 1")],
        ),
        # problems: eta's problem duplicates alpha's
        Rule(pattern=r"problem about: eta", replies=[problem("alpha")]),
        *[Rule(pattern=f"problem about: {t}\\b", replies=[problem(t)]) for t in TOPICS[:6]],
        # solutions
        Rule(pattern=r"\[alpha\]", replies=[answer("alpha")]),
        Rule(pattern=r"\[beta\]", replies=[answer("beta", "return x + 2")]),
        Rule(pattern=r"\[gamma\]", replies=[answer("gamma", "return x * 3")]),
        Rule(pattern=r"\[delta\]", replies=[answer("delta", "import os\n    return x + 1")]),
        Rule(pattern=r"\[epsilon\]", replies=[answer("epsilon")]),
        Rule(pattern=r"\[zeta\]", replies=["I cannot write code today."]),
    ]
    return Script(rules=rules, models=["test-model", "judge-model"])


@pytest.fixture
def server():
    with LLMTestServer(script()) as s:
        yield s


def params(tmp_path: Path, server: LLMTestServer, **overrides) -> CodeSFTParams:
    topics = tmp_path / "topics.txt"
    topics.write_text("\n".join(TOPICS) + "\n")
    return CodeSFTParams(
        out=str(tmp_path / "out"),
        provider="openai-compatible",
        model="test-model",
        base_url=server.base_url,
        n_problems=7,
        topics_file=str(topics),
        difficulties=["easy"],
        n_solutions=1,
        max_revision_rounds=1,
        sandbox="bwrap",
        shard_size=3,
        **overrides,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_every_path_ends_where_it_should(tmp_path, server, prefect_harness) -> None:
    from flows.code_sft import code_sft

    p = params(tmp_path, server)
    summary = code_sft(p)
    out = Path(p.out)

    kept = {r["metadata"]["problem_id"]: r for r in read_jsonl(out / "dataset.jsonl")}
    kept_names = sorted(r["metadata"]["topic"] for r in kept.values())
    assert kept_names == ["alpha", "beta"]
    rounds = {r["metadata"]["topic"]: r["metadata"]["revision_rounds"] for r in kept.values()}
    assert rounds == {"alpha": 0, "beta": 1}
    example = next(iter(kept.values()))
    assert example["messages"][0]["role"] == "user"
    assert example["messages"][1]["content"].startswith("```python\ndef f_")
    # the tests it passed are part of the answer, not only of the metadata
    tests = example["metadata"]["tests"].rstrip()
    assert f"Tests:\n\n```python\n{tests}\n```" in example["messages"][1]["content"]
    assert example["metadata"]["judge"]["score"] == 2
    assert all(r["metadata"]["source_id"].startswith("seed-") for r in kept.values())

    rejected = read_jsonl(out / "rejected.jsonl")
    by_stage = {}
    for r in rejected:
        by_stage.setdefault(r["stage"], []).append(r)
    assert len(by_stage["unique_problems"]) == 1
    assert by_stage["unique_problems"][0]["reason"].startswith("duplicate of p-")
    assert [r["record"]["topic"] for r in by_stage["solutions"]] == ["zeta"]
    assert "malformed model answer" in by_stage["solutions"][0]["reason"]
    revision = {r["record"]["topic"]: r["reason"] for r in by_stage["revision"]}
    assert set(revision) == {"gamma", "delta"}
    assert "AssertionError" in revision["gamma"] or "exit" in revision["gamma"]
    assert "F401" in revision["delta"]
    assert [r["record"]["topic"] for r in by_stage["judge"]] == ["epsilon"]
    assert "style fail" in by_stage["judge"][0]["reason"]
    assert all(r["stage"] and r["reason"] and r["id"] for r in rejected)

    funnel = json.loads((out / "funnel.json").read_text())
    stages = {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]}
    assert stages == {
        "problems": (7, 7, 0),
        "unique_problems": (7, 6, 1),
        "solutions": (6, 5, 1),
        "static": (5, 5, 0),
        "execute": (5, 3, 2),
        "coherent": (3, 3, 0),
        "judge": (3, 2, 1),
        "dedup": (2, 2, 0),
    }
    assert funnel["kept"] == 2 and funnel["kept_needing_revision"] == 1
    # the six unique problems' diversity was measured and passed its (warning) gate
    assert funnel["diversity"]["texts"] == 6 and funnel["diversity"]["spread"] > 0.2
    assert {g["suite"]: g["success"] for g in funnel["gates"]}["code_sft.diversity"] is True
    assert summary["kept"] == 2

    # One candidate per problem here, so no problem has both a kept and a failed one.
    assert read_jsonl(out / "preferences.jsonl") == []

    # A re-run reuses every stage: no request reaches the server.
    before = server.stats.chat_requests
    again = code_sft(p)
    assert server.stats.chat_requests == before
    assert again["llm_calls_from_journal"] == again["llm_calls"]
    assert {r["id"] for r in read_jsonl(out / "dataset.jsonl")} == {r["id"] for r in kept.values()}
    assert all(s["reused"] for s in again["stages"])

    # Another judge model: only the judge (and what follows it) runs again, and only the
    # judge's requests reach the server, one per executed candidate.
    before = server.stats.chat_requests
    third = code_sft(p.model_copy(update={"judge_model": "judge-model"}))
    assert {s["stage"]: s["reused"] for s in third["stages"]} == {
        "problems": True,
        "unique_problems": True,
        "solutions": True,
        "static": True,
        "execute": True,
        "coherent": True,
        "judge": False,
        "dedup": False,
    }
    assert server.stats.chat_requests - before == 3
    judged = read_jsonl(out / "dataset.jsonl")
    assert {r["metadata"]["judge"]["model"] for r in judged} == {"judge-model"}
