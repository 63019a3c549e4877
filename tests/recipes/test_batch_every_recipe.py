"""`batch=true` works for every recipe: each recipe's scripted scenario, sent through the
OpenAI Batch API double and the Anthropic Message Batches double (test doubles, not
models), ends with the same funnel as the live run, with no live request at all, and a
re-run submits nothing again. (RAG QA has its own, longer batch tests.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.registry import get_recipe
from tasks.llm.batch.api import BatchSettings
from tasks.llm.journal import Journal
from winnow.testing.batch_server import AnthropicBatchServer, BatchBehaviour, OpenAIBatchServer
from winnow.testing.scenarios import scenario_for

RECIPES = ["code-sft", "php-translation", "math-word-problems", "generate"]
SERVERS = {"openai": OpenAIBatchServer, "anthropic": AnthropicBatchServer}


def funnel_of(summary: dict) -> dict[str, tuple[int, int, int]]:
    return {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in summary["stages"]}


@pytest.mark.slow
@pytest.mark.parametrize("api", sorted(SERVERS))
@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_runs_through_a_batch_api(
    name: str, api: str, tmp_path: Path, monkeypatch, prefect_harness
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    recipe, scenario = get_recipe(name), scenario_for(name)
    with SERVERS[api](scenario.script(), BatchBehaviour(polls_before_done=1)) as server:
        given = scenario.params(tmp_path, server.base_url)
        params = recipe.params_model()(
            **{**given, "provider": api, "batch": True, "batch_poll_s": 0.02}
        )
        summary = recipe.flow()(params)
        assert funnel_of(summary) == scenario.funnel
        assert summary["kept"] == scenario.kept
        assert server.stats.chat_requests == 0  # nothing went live
        created = server.batch.batch_stats.batches_created
        assert created >= 1
        journal = Journal()
        entries = journal._all()
        journal.close()
        assert entries and all(e.batch and e.provider == api for e in entries)

        # A re-run submits only what failed for good (its shard was left incomplete);
        # every answer is journaled and sent nowhere again.
        failed = {
            key
            for key, n in server.batch.batch_stats.batched.items()
            if n == BatchSettings().max_rounds
        }
        before = dict(server.batch.batch_stats.batched)
        again = recipe.flow()(params)
        assert funnel_of(again) == scenario.funnel
        resent = {k for k, n in server.batch.batch_stats.batched.items() if n > before.get(k, 0)}
        assert resent == failed
        if not failed:
            assert server.batch.batch_stats.batches_created == created
    out = Path(params.out)
    published = out if out.is_file() else out / "dataset.jsonl"
    assert len([json.loads(x) for x in published.read_text().splitlines()]) >= scenario.kept
