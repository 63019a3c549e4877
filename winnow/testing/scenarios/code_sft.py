"""Code SFT, small: one problem solved at once, one whose solution fails its own tests
(no revision round), one the judge fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import Rule, Script
from winnow.testing.scenarios import Scenario, served_by, topics_file

TOPICS = ["alpha", "beta", "gamma"]


def _problem(tag: str) -> str:
    problem = f"Write `f_{tag}(x: int) -> int` returning x plus one. [{tag}]"
    return json.dumps({"title": tag, "problem": problem})


def _solution(tag: str, body: str) -> str:
    return (
        f"```python\ndef f_{tag}(x: int) -> int:\n    # add one\n    {body}\n```\n"
        f"```python\nassert f_{tag}(1) == 2\nassert f_{tag}(-1) == 0\n```"
    )


def _verdict(style: str) -> str:
    return json.dumps({"correctness": "pass", "style": style, "reason": "read it"})


def script() -> Script:
    return Script(
        rules=[
            Rule(pattern=r"Grade two things.*\[gamma\]", replies=[_verdict("fail")]),
            Rule(pattern=r"Grade two things", replies=[_verdict("pass")]),
            *[Rule(pattern=f"problem about: {t}\\b", replies=[_problem(t)]) for t in TOPICS],
            Rule(pattern=r"\[alpha\]", replies=[_solution("alpha", "return x + 1")]),
            Rule(pattern=r"\[beta\]", replies=[_solution("beta", "return x + 2")]),
            Rule(pattern=r"\[gamma\]", replies=[_solution("gamma", "return x + 1")]),
        ]
    )


def params(work: Path, base_url: str) -> dict[str, Any]:
    return {
        **served_by(base_url, work),
        "n_problems": len(TOPICS),
        "topics_file": topics_file(work, TOPICS),
        "difficulties": ["easy"],
        "n_solutions": 1,
        "max_revision_rounds": 0,
        "sandbox": "bwrap",
        "shard_size": 2,
    }


SCENARIO = Scenario(
    recipe="code-sft",
    script=script,
    params=params,
    funnel={
        "problems": (3, 3, 0),
        "unique_problems": (3, 3, 0),
        "solutions": (3, 3, 0),
        "static": (3, 3, 0),
        "execute": (3, 2, 1),  # beta fails its tests
        "coherent": (2, 2, 0),
        "judge": (2, 1, 1),  # gamma fails on style
        "dedup": (1, 1, 0),
    },
    kept=1,
)
