"""PHP translation, small: one function translated and kept, one translation that is not
code at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import Rule, Script
from winnow.testing.scenarios import Scenario, served_by

NAMES = ["alpha", "beta"]


def _row(name: str) -> dict[str, str]:
    return {
        "id": name,
        "problem": f"Write a Python function `f_{name}(x: int) -> int` returning x plus one.",
        "solution": f"def f_{name}(x: int) -> int:\n    return x + 1\n",
        "tests": f"assert f_{name}(1) == 2\nassert f_{name}(-1) == 0\n",
    }


PHP = (
    "```php\n<?php\ndeclare(strict_types=1);\n\n/** Adds one. */\n"
    "function f_alpha(int $x): int\n{\n    return $x + 1;\n}\n```\n"
    "```php\nassert(f_alpha(1) === 2);\nassert(f_alpha(-1) === 0);\n```"
)
FAITHFUL = json.dumps({"same_behaviour": "yes", "same_tests": "yes", "reason": "compared"})


def script() -> Script:
    return Script(
        rules=[
            Rule(pattern=r"You compare a PHP translation", replies=[FAITHFUL]),
            Rule(pattern=r"f_alpha\(", replies=[PHP]),
            Rule(pattern=r"f_beta\(", replies=["Sorry, I only write Python."]),
        ]
    )


def params(work: Path, base_url: str) -> dict[str, Any]:
    source = work / "verified.jsonl"
    source.write_text("".join(json.dumps(_row(n)) + "\n" for n in NAMES))
    return {
        "source": str(source),
        **served_by(base_url, work),
        "max_revision_rounds": 0,
        "sandbox": "bwrap",
    }


SCENARIO = Scenario(
    recipe="php-translation",
    script=script,
    params=params,
    funnel={
        "python_check": (2, 2, 0),
        "translate": (2, 1, 1),  # beta: no PHP in the answer
        "execute": (1, 1, 0),
        "coverage": (1, 1, 0),
        "faithfulness": (1, 1, 0),
    },
    kept=1,
)
