"""Provider faults, all at once: the scripted test LLM server (a named test double)
answers 20% of requests with 429 + Retry-After, 5% with 500, lets 2% hang past the
client's timeout and sends 5% as malformed JSON bodies (seeded). `winnow run code-sft`
still completes with exit code 0, every input ends kept or rejected with a reason, and
retries stay within the client's bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.llm.base import ProviderSpec
from tasks.llm.concurrency import RetryPolicy
from tests.recipes.test_code_sft_flow import JUDGE_PASS, answer, problem
from winnow.cli import app
from winnow.testing.llm_server import Faults, LLMTestServer, Rule, Script

pytestmark = pytest.mark.slow

N_PROBLEMS = 24
N_SOLUTIONS = 3
TIMEOUT_S = 1.5


def topic(i: int) -> str:
    return f"topic{i:02d}"


def faulty_script() -> Script:
    """Every topic answered well, except every fifth whose first solution is wrong (so
    revision requests happen too); faults drawn for every request."""
    rules = [Rule(pattern=r"Grade two things", replies=[JUDGE_PASS])]
    for i in range(N_PROBLEMS):
        t = topic(i)
        rules.append(Rule(pattern=rf"failed its checks.*\[{t}\]", replies=[answer(t)]))
        rules.append(Rule(pattern=rf"problem about: {t}\b", replies=[problem(t)]))
        body = "return x + 2" if i % 5 == 0 else "return x + 1"
        rules.append(Rule(pattern=rf"\[{t}\]", replies=[answer(t, body)]))
    return Script(
        rules=rules,
        faults=Faults(p_429=0.20, p_500=0.05, p_hang=0.02, p_malformed=0.05, seed=11),
        retry_after_s=0.2,
        hang_s=TIMEOUT_S * 4,
        latency_ms=5,
    )


def test_run_completes_through_every_provider_fault_at_once(
    tmp_path: Path, prefect_harness: None, project_dir: Path
) -> None:
    topics = tmp_path / "topics.txt"
    topics.write_text("\n".join(topic(i) for i in range(N_PROBLEMS)) + "\n")
    out = tmp_path / "out"
    sets = {
        "topics_file": topics,
        "n_problems": N_PROBLEMS,
        "difficulties": '["easy"]',
        "n_solutions": N_SOLUTIONS,
        "max_revision_rounds": 1,
        "sandbox": "bwrap",
        "shard_size": 12,
        "concurrency": 8,
        "llm_timeout_s": TIMEOUT_S,
    }
    with LLMTestServer(faulty_script()) as server:
        args = ["run", "code-sft", "--provider", "openai-compatible", "--model", "test-model"]
        args += ["--base-url", server.base_url, "--out", str(out)]
        for key, value in sets.items():
            args += ["--set", f"{key}={value}"]
        result = CliRunner().invoke(app, args)
        stats = server.stats.snapshot()

    assert result.exit_code == 0, (result.output, result.exception)
    faults = stats["faults"]
    print("server:", stats["chat_requests"], "requests,", len(stats["by_request"]), "distinct,")
    print("faults:", faults)
    # Each fault really happened, several times.
    for kind, at_least in (("429", 10), ("500", 3), ("hang", 2), ("malformed", 3)):
        assert faults.get(kind, 0) >= at_least, (kind, faults)

    # Bounded retries: per request, at most the client's budget (one send, max_retries
    # transient retries, max_retries x rate_limit_factor rate-limit retries); overall,
    # well under 2 sends per distinct request with about a third of sends failing.
    spec, policy = ProviderSpec(), RetryPolicy()
    per_request = 1 + spec.max_retries * (1 + policy.rate_limit_factor)
    assert max(stats["by_request"].values()) <= per_request
    assert stats["chat_requests"] <= 2 * len(stats["by_request"])

    # Accounting: each stage's inputs are kept or rejected, stage to stage.
    funnel = json.loads((out / "funnel.json").read_text())
    stages = {s["stage"]: s for s in funnel["stages"]}
    assert stages["problems"]["n_in"] == N_PROBLEMS
    previous = None
    for s in funnel["stages"]:
        assert s["n_in"] == s["n_out"] + s["n_rejected"], s
        if previous is not None:
            units = N_SOLUTIONS if s["stage"] == "solutions" else 1
            assert s["n_in"] == previous["n_out"] * units, (previous, s)
        previous = s
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == sum(s["n_rejected"] for s in funnel["stages"])
    assert all(r["id"] and r["stage"] and r["reason"] for r in rejected)
    kept = (out / "dataset.jsonl").read_text().splitlines()
    assert len(kept) == funnel["kept"] == funnel["stages"][-1]["n_out"]
    # Faults are retried, not turned into data loss: every topic's problem made it.
    assert stages["problems"]["n_out"] == N_PROBLEMS
    assert funnel["kept"] >= N_PROBLEMS * 0.9
