"""`generate`, scripted: three rows answered, one whose request fails for good (a 500
on every try), which comes out with its error, in input order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import Reply, Rule, Script
from winnow.testing.scenarios import Scenario, served_by


def script() -> Script:
    return Script(
        rules=[
            Rule(pattern=r"question 2\b", replies=[Reply(fault="500")]),
            Rule(pattern=r"question \d+", replies=["an answer"]),
        ]
    )


def params(work: Path, base_url: str) -> dict[str, Any]:
    source = work / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "instruction": f"question {i}"}) + "\n" for i in range(4)
        )
    )
    return {
        **served_by(base_url, work),
        "input": str(source),
        "out": str(work / "out.jsonl"),
        "shard_size": 2,
        "max_retries": 1,
    }


SCENARIO = Scenario(
    recipe="generate",
    script=script,
    params=params,
    funnel={"generate": (4, 3, 1)},
    kept=3,
)
