"""What IFD and training utility cost per example, and how utility grows with the number of
dev examples each candidate is tried on (``dev_sample``).

Every measurement starts from an empty journal (a temporary project directory), so each
score is really computed: the time is the scorer's, not the journal's. The examples are
short code questions and answers written here (``EXAMPLES``); the dev set is made of the
same kind of rows.

    python benchmarks/scoring.py [--provider local] [--n 6] [--dev-sizes 1 2 4] [--out F]

On the embedded model this uses every core for minutes: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = [
    ("reverse a string", "def reverse(s):\n    return s[::-1]"),
    ("sum a list of numbers", "def total(xs):\n    return sum(xs)"),
    ("check whether a number is even", "def is_even(n):\n    return n % 2 == 0"),
    ("count the vowels in a word", "def vowels(w):\n    return sum(c in 'aeiou' for c in w)"),
    ("return the largest of three numbers", "def largest(a, b, c):\n    return max(a, b, c)"),
    ("square every item of a list", "def squares(xs):\n    return [x * x for x in xs]"),
    ("join words with commas", "def join(ws):\n    return ', '.join(ws)"),
    ("drop duplicates keeping order", "def unique(xs):\n    return list(dict.fromkeys(xs))"),
    ("capitalise each word", "def title(s):\n    return s.title()"),
    ("the factorial of n", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)"),
    ("flatten a list of lists", "def flat(xss):\n    return [x for xs in xss for x in xs]"),
    ("is a string a palindrome", "def pal(s):\n    return s == s[::-1]"),
]


def chat(i: int, task: tuple[str, str]) -> dict:
    question, code = task
    return {
        "id": f"x{i}",
        "messages": [
            {"role": "user", "content": f"Write a Python function to {question}."},
            {"role": "assistant", "content": f"```python\n{code}\n```"},
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="local")
    parser.add_argument("--model", default="")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--n", type=int, default=6, help="candidates scored")
    parser.add_argument("--dev-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from tasks.curation.ifd import IFDConfig, ifd_score_batch
    from tasks.curation.utility import UtilityConfig, load_dev, utility_score_batch
    from tasks.llm.base import ProviderSpec
    from tasks.pipeline.stage import RunInfo, StageContext

    spec = ProviderSpec(kind=args.provider, model=args.model, base_url=args.base_url)
    rows = [chat(i, TASKS[i % len(TASKS)]) for i in range(args.n)]
    dev_pool = [chat(100 + i, TASKS[-1 - i % len(TASKS)]) for i in range(max(args.dev_sizes))]
    ctx = StageContext(run=RunInfo(run_id="bench", recipe="bench"), stage="bench")
    report: dict = {"provider": spec.kind, "model": spec.model or "default", "n": args.n}

    def fresh_project() -> None:
        os.environ["WINNOW_PROJECT_DIR"] = tempfile.mkdtemp(prefix="winnow-scoring-")

    fresh_project()
    ifd_score_batch(rows[:1], IFDConfig(scorer=spec), ctx)  # load the model: not timed
    fresh_project()
    started = time.monotonic()
    out = ifd_score_batch(rows, IFDConfig(scorer=spec), ctx)
    seconds = time.monotonic() - started
    report["ifd"] = {
        "seconds_per_example": round(seconds / args.n, 2),
        "scored": len(out.kept),
        "ifd": [r["metadata"]["ifd"] for r in out.kept],
    }
    print("ifd", json.dumps(report["ifd"]), flush=True)
    report["utility"] = {}
    for size in args.dev_sizes:
        fresh_project()
        dev = load_dev(dev_pool[:size])
        config = UtilityConfig(dev=dev, scorer=spec, dev_sample=size)
        started = time.monotonic()
        out = utility_score_batch(rows, config, ctx)
        seconds = time.monotonic() - started
        report["utility"][str(size)] = {
            "seconds_per_example": round(seconds / args.n, 2),
            "scored": len(out.kept),
        }
        print(f"utility dev_sample={size}", json.dumps(report["utility"][str(size)]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
