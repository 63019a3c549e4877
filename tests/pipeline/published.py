"""A published dataset folder made without a flow: rows of every shape a recipe writes
(varied metadata, code, a dialog, hostile text), published with the real ``publish`` and
the real report and card writers, and a catalog run pointing at it. The fast tests of
the report, the card, ``winnow show --open`` and ``winnow push`` share it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.pipeline.card import write_card
from tasks.pipeline.facts import RunFacts
from tasks.pipeline.params import CardParams
from tasks.pipeline.report import write_report
from tasks.store.catalog import Catalog
from tasks.store.publish import publish

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
RUN_ID = "code-sft-20260101-000000-abcdef"


def kept_rows() -> list[dict[str, Any]]:
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    return [
        {
            "id": f"k{i}",
            "messages": [
                {"role": "user", "content": f"Write add(a, b). {HOSTILE if i == 0 else ''}"},
                {"role": "assistant", "content": code},
            ],
            "metadata": {
                "problem_id": f"p{i}",
                "score": 1 if i % 2 else 0.5,  # int and float: float64
                "agreement": {},  # always empty: json
                "judge": None if i == 0 else {"verdict": "pass", "votes": [1, 1, 0]},
                "answer": 12 if i < 2 else "twelve",  # a number and a string: json
                "lint": [],
            },
        }
        for i in range(3)
    ]


def rejected_rows() -> list[dict[str, Any]]:
    rows = [
        {
            "id": "r0",
            "stage": "execute",
            "reason": "AssertionError: assert add(1, 1) == 3",
            "detail": {"exit_code": 1},
            "record": {"id": "r0", "problem_id": "p1", "solution": "def add(a, b):\n    return a"},
        },
        {
            "id": "r1",
            "stage": "judge",
            "reason": f"judge said no {HOSTILE}",
            "detail": {},
            "record": {"id": "r1", "problem_id": "p9", "problem": HOSTILE},
        },
    ]
    rows += [
        {"id": f"e{i}", "stage": "execute", "reason": "AssertionError: assert add(1, 1) == 3",
         "detail": {}, "record": {"id": f"e{i}", "problem_id": f"q{i}"}}
        for i in range(4)
    ]  # fmt: skip
    return rows


def facts(kept: int = 3) -> RunFacts:
    stages = [
        {"stage": "solutions", "n_in": 9, "n_out": 9, "n_rejected": 0, "seconds": 1.5},
        {"stage": "execute", "n_in": 9, "n_out": 4, "n_rejected": 5, "seconds": 2.25},
        {"stage": "judge", "n_in": 4, "n_out": kept, "n_rejected": 4 - kept, "seconds": 0.75},
    ]
    return RunFacts(
        run_id=RUN_ID,
        recipe="code-sft",
        params={"n_problems": 9, "base_url": "http://10.0.0.7:8000/v1", "model": "m"},
        card=CardParams(license="apache-2.0", language=["en", "fr"]),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        published_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
        funnel={
            "run_id": RUN_ID,
            "recipe": "code-sft",
            "stages": stages,
            "kept": kept,
            "tokens": {"prompt": 1200, "completion": 300},
            "llm_calls": 13,
            "llm_calls_from_journal": 0,
            "llm_sends": 14,
            "cost_usd": 0.0123,
            "gates": [],
        },
        usage=[
            {"stage": "solutions", "provider": "openai", "model": "gpt-4o-mini",
             "template": "code_sft/solution", "template_version": "3", "calls": 9,
             "cached_calls": 0, "prompt_tokens": 900, "completion_tokens": 250,
             "cost_usd": 0.01, "mean_latency_s": 0.5},
            {"stage": "judge", "provider": "anthropic", "model": "claude-haiku-4-5",
             "template": "code_sft/judge", "template_version": "1", "calls": 4,
             "cached_calls": 0, "prompt_tokens": 300, "completion_tokens": 50,
             "cost_usd": 0.0023, "mean_latency_s": 0.25},
        ],
        validations=[
            {"stage": "execute", "suite": "code_sft.executed", "severity": "critical",
             "success": True, "n_expectations": 4, "n_failed": 0, "details": [],
             "duration_s": 0.1},
            {"stage": "judge", "suite": "code_sft.kept", "severity": "warning",
             "success": False, "n_expectations": 3, "n_failed": 1,
             "details": [{"expectation": "expect_column_values_to_not_be_null"}],
             "duration_s": 0.2},
        ],
    )  # fmt: skip


def publish_folder(out: Path, with_catalog: bool = True) -> Path:
    """Publish the rows above to ``out`` as ``Run.publish`` does; record a completed run."""
    the_facts = facts()
    publish(
        out,
        {
            "dataset.jsonl": kept_rows(),
            "rejected.jsonl": rejected_rows(),
            "preferences.jsonl": [{"prompt": "p", "chosen": "a", "rejected": "b"}],
            "funnel.json": the_facts.funnel,
            "report.html": lambda path: write_report(path, the_facts),
            "README.md": lambda path: write_card(path, the_facts),
        },
    )
    if with_catalog:
        catalog = Catalog()
        catalog.start_run(RUN_ID, "code-sft", {}, out_dir=out)
        catalog.finish_run(RUN_ID, "completed", out_dir=out)
    return out
