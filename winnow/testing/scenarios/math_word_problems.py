"""The math word-problem recipe, scripted so every path happens once: kept at once, a
wrong stated answer, a program that crashes, malformed JSON, a program with no solve(),
a problem the judge finds ill-posed, a duplicate problem, a worked solution that does
not reach its (verified) answer, and a second kept one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import Rule, Script
from winnow.testing.scenarios import Scenario, served_by, topics_file

TOPICS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
RIGHT = "Three boxes of four pens make 3 × 4 = 12 pens."


def problem(tag: str, program: str, answer: Any, solution: str = RIGHT) -> str:
    return json.dumps(
        {
            "problem": f"[{tag}] A shop sells 3 boxes of 4 pens each. How many pens is that?",
            "solution": solution,
            "program": program,
            "answer": answer,
        }
    )


SOLVE = "def solve():\n    boxes = 3\n    return boxes * 4\n"
WELL_POSED = json.dumps({"well_posed": "yes", "reason": "clear and complete"})
ILL_POSED = json.dumps({"well_posed": "no", "reason": "the price is never given"})


def script() -> Script:
    rules = [
        # judge (its prompt holds the problem's tag, so it comes first)
        Rule(pattern=r"well-posed.*\[epsilon\]", replies=[ILL_POSED]),
        Rule(pattern=r"well-posed", replies=[WELL_POSED]),
        Rule(pattern=r"problem about: alpha", replies=[problem("alpha", SOLVE, 12)]),
        Rule(pattern=r"problem about: beta", replies=[problem("beta", SOLVE, 13)]),
        Rule(
            pattern=r"problem about: gamma",
            replies=[problem("gamma", "def solve():\n    return 12 / 0\n", 12)],
        ),
        Rule(pattern=r"problem about: delta", replies=["Sure! The answer is 12 pens."]),
        Rule(
            pattern=r"problem about: zeta",
            replies=[problem("zeta", "boxes = 3\nprint(boxes * 4)\n", 12)],
        ),
        Rule(pattern=r"problem about: epsilon", replies=[problem("epsilon", SOLVE, "12")]),
        Rule(pattern=r"problem about: eta", replies=[problem("alpha", SOLVE, 12)]),  # duplicate
        Rule(
            pattern=r"problem about: iota",
            replies=[problem("iota", SOLVE, 12, "Three boxes of five pens make 3 × 5 = 15.")],
        ),
        Rule(
            pattern=r"problem about: theta",
            replies=[problem("theta", "from fractions import Fraction\n\n\ndef solve():\n"
                     "    return Fraction(36, 3)\n", "12.0")],
        ),
    ]  # fmt: skip
    return Script(rules=rules, models=["test-model", "judge-model"])


def params(work: Path, base_url: str) -> dict[str, Any]:
    return {
        **served_by(base_url, work),
        "n_problems": len(TOPICS),
        "topics_file": topics_file(work, TOPICS),
        "difficulties": ["easy"],
        "sandbox": "bwrap",
        "shard_size": 3,
    }


SCENARIO = Scenario(
    recipe="math-word-problems",
    script=script,
    params=params,
    funnel={
        "problems": (9, 8, 1),  # delta: malformed JSON (asked 3 times)
        "unique_problems": (8, 7, 1),  # eta repeats alpha
        "static": (7, 6, 1),  # zeta: no solve()
        "execute": (6, 4, 2),  # beta: wrong stated answer; gamma: crashes
        "coherent": (4, 3, 1),  # iota: its worked solution ends at 15, not 12
        "judge": (3, 2, 1),  # epsilon: ill-posed
    },
    kept=2,
)
