"""Training utility (Nuggets' one-shot golden score): the drop in the scorer's loss on
verified dev examples when a candidate is shown first. Scored against the test server's
copy model (a named test double: a word already in the text is likely), so a candidate
that shares words with the dev answers helps and an unrelated one does not."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from tasks.curation.utility import (
    UtilityConfig,
    load_dev,
    utility_score_batch,
    utility_select,
)
from tasks.llm.base import ProviderSpec
from tasks.pipeline.stage import RunInfo, StageContext
from winnow.cli import app
from winnow.testing.llm_server import TOY_NEW, TOY_SEEN


def chat(i: str, question: str, answer: str) -> dict:
    return {
        "id": i,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
    }


DEV = [chat("d1", "compute a total", "use addition carefully")]
HELPS = chat("helps", "how do I sum", "use carefully chosen steps")
NEUTRAL = chat("neutral", "name a fruit", "banana")


def ctx() -> StageContext:
    return StageContext(run=RunInfo(run_id="t", recipe="t"), stage="utility")


def config(server, **extra) -> UtilityConfig:
    spec = ProviderSpec(kind="openai-compatible", model="test-model", base_url=server.base_url)
    return UtilityConfig(dev=load_dev(DEV), scorer=spec, **extra)


def test_a_demonstration_that_makes_dev_answers_likelier_has_positive_utility(llm_server):
    out = utility_score_batch([HELPS, NEUTRAL], config(llm_server), ctx())
    assert not out.rejected
    utility = {r["id"]: r["metadata"]["utility"] for r in out.kept}
    # dev answer: "use" (new -> seen after the demo), "addition", "carefully" (new -> seen)
    # so the mean loss over its 3 tokens drops by 2/3 of (log 0.5 - log 0.02)
    assert utility["helps"] == pytest.approx(2 * (TOY_SEEN - TOY_NEW) / 3, rel=1e-5)
    assert utility["neutral"] == pytest.approx(0.0, abs=1e-9)
    detail = {r["id"]: r["metadata"]["utility_detail"] for r in out.kept}
    assert detail["helps"] == {"golden_score": 1.0, "dev_examples": 1}
    # calls: the dev example zero-shot, then one one-shot read per candidate
    assert len(out.calls) == 3

    kept = [r["id"] for k, r in utility_select(iter(out.kept), config(llm_server), ctx())
            if k == "kept"]  # fmt: skip
    assert kept == ["helps"]
    rejected = [r for k, r in utility_select(iter(out.kept), config(llm_server), ctx())
                if k == "rejected"]  # fmt: skip
    assert "does not help the dev set" in rejected[0]["reason"]


def test_a_failing_dev_score_rejects_the_batch_with_the_error(llm_server):
    spec = ProviderSpec(
        kind="openai-compatible", model="absent", base_url=llm_server.base_url, max_retries=0
    )
    cfg = UtilityConfig(dev=load_dev(DEV), scorer=spec)
    out = utility_score_batch([HELPS], cfg, ctx())
    assert not out.kept and "dev scoring failed" in out.rejected[0]["reason"]
    assert any(c["error"] for c in out.calls)


def test_dev_sample_is_fixed_by_seed_and_bounds_the_cost(llm_server):
    dev = [chat(f"d{i}", f"question {i}", f"answer {i}") for i in range(20)]
    spec = ProviderSpec(kind="openai-compatible", model="test-model", base_url=llm_server.base_url)
    cfg = UtilityConfig(dev=load_dev(dev), scorer=spec, dev_sample=3)
    out = utility_score_batch([HELPS], cfg, ctx())
    assert out.kept[0]["metadata"]["utility_detail"]["dev_examples"] == 3
    assert len(out.calls) == 6  # 3 zero-shot + 3 one-shot
    assert math.isfinite(out.kept[0]["metadata"]["utility"])


def test_cli_curate_utility(llm_server, tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in DEV))
    rejected = tmp_path / "rejected.jsonl"
    result = CliRunner().invoke(
        app,
        ["curate", "utility", "--dev", str(dev), "--provider", "openai-compatible",
         "--model", "test-model", "--base-url", llm_server.base_url,
         "--rejected", str(rejected)],
        input="".join(json.dumps(r) + "\n" for r in (HELPS, NEUTRAL)),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    kept = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    assert [r["id"] for r in kept] == ["helps"] and kept[0]["metadata"]["utility"] > 0
    assert [json.loads(x)["id"] for x in rejected.read_text().splitlines()] == ["neutral"]

    missing = CliRunner().invoke(app, ["curate", "utility"], input=json.dumps(HELPS) + "\n")
    assert missing.exit_code == 2 and "--dev" in missing.output


def test_recipe_parameter_reads_the_dev_set_at_plan_time(tmp_path):
    from tasks.curation.optional import CurationParams, plan_curation
    from tasks.llm.base import ConfigError

    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in DEV))
    plan = plan_curation(
        CurationParams(utility_dev=str(dev), utility_top_fraction=0.5),
        ["problem", "solution"], "problem", None,
    )  # fmt: skip
    assert plan.utility is not None and plan.utility.dev[0].answer == "use addition carefully"
    assert plan.utility.instruction_field == "problem" and plan.utility.top_fraction == 0.5
    with pytest.raises(ConfigError, match="absent"):
        plan_curation(CurationParams(utility_dev=str(tmp_path / "absent.jsonl")),
                      ["problem", "solution"], "problem", None)  # fmt: skip
