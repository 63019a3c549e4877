"""How often is a kept math example's answer right? Measured on GSM8K, whose reference
answers Winnow never sees.

Data: the GSM8K test set (OpenAI, MIT licence), ``grade_school_math/data/test.jsonl`` of
github.com/openai/grade-school-math: pass its path with ``--gsm8k`` (no network needed
once you have it). Winnow is given only the questions (``--set problems=...``, no
``answer_field``); the model writes a worked solution, a ``solve()`` program and an
answer; Winnow keeps a problem when the sandboxed program computes the stated answer,
the worked solution reaches it, and the judge finds the problem well-posed. Then the
stated answer of every problem's first attempt, and of every kept example, is compared
with GSM8K's answer (the number after ``####``).

    python benchmarks/precision_math.py --gsm8k PATH/test.jsonl --limit 20
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, machine, print_table  # noqa: E402
from benchmarks.precision import run_of, run_winnow  # noqa: E402


def right(stated: Any, reference: str) -> bool:
    from tasks.recipes.math_word_problems.answers import parse_number, same_answer
    from tasks.recipes.math_word_problems.inputs import reference_text

    value, expected = parse_number(str(stated)), parse_number(reference_text(reference))
    return value is not None and expected is not None and same_answer(value, expected, 1e-6)


def first_attempts(run_id: str) -> tuple[dict[str, Any], int]:
    """source id -> the answer the model first stated, and how many answers were unusable."""
    from tasks.store.catalog import Catalog
    from tasks.store.shards import iter_shards

    catalog = Catalog()
    paths = [s.path for s in catalog.stage_shards(run_id, "problems", "kept")]
    stated = {r["source_id"]: r["stated_answer"] for r in iter_shards(paths)}
    return stated, len(catalog.rejections(run_id, stage="problems", limit=1_000_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gsm8k", type=Path, required=True, help="GSM8K test.jsonl")
    parser.add_argument("--limit", type=int, default=20, help="first N problems")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="more recipe parameters")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-precision-math")
    args = parser.parse_args()

    lines = args.gsm8k.read_text().splitlines()[args.offset : args.offset + args.limit]
    tasks = {f"gsm8k-test-{args.offset + i}": json.loads(line) for i, line in enumerate(lines)}
    args.out.mkdir(parents=True, exist_ok=True)
    problems = args.out / "problems.jsonl"
    problems.write_text(
        "".join(json.dumps({"id": k, "question": t["question"]}) + "\n" for k, t in tasks.items())
    )
    out = args.out / "dataset"
    sets = [f"problems={problems}", "problem_field=question", *args.set]
    wall = run_winnow("math-word-problems", out, sets)
    run = run_of("math-word-problems", out)
    firsts, unusable = first_attempts(run["run_id"])
    kept = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    first_right = sum(right(a, tasks[s]["answer"]) for s, a in firsts.items())
    kept_right = [
        right(k["metadata"]["stated_answer"], tasks[k["metadata"]["source_id"]]["answer"])
        for k in kept
    ]
    raw = first_right / len(tasks)
    precision = sum(kept_right) / max(1, len(kept))
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "data": f"GSM8K test problems {args.offset}..{args.offset + len(tasks) - 1} "
        "(openai/grade-school-math, test.jsonl)",
        "model": run["models"],
        "run_id": run["run_id"],
        "wall_s": round(wall, 1),
        "problems": len(tasks),
        "unusable_answers": unusable,
        "first_answers_right": first_right,
        "raw_accuracy": round(raw, 3),
        "kept": len(kept),
        "kept_right": sum(kept_right),
        "kept_accuracy": round(precision, 3),
        "lift": round(precision - raw, 3),
        "yield": round(len(kept) / len(tasks), 3),
        "funnel": [
            (s["stage"], s["n_in"], s["n_out"])
            for s in json.loads((out / "funnel.json").read_text())["stages"]
        ],
        "kept_wrong": [
            k["metadata"]["source_id"] for k, ok in zip(kept, kept_right, strict=True) if not ok
        ],
    }
    print(f"\naccuracy of kept math examples on {report['data']}; {report['machine']}")
    print(f"model {report['model']}; {wall:.0f} s")
    print_table(
        ["problems", "first answers right", "kept", "kept right", "lift", "yield"],
        [[len(tasks), report["raw_accuracy"], len(kept), report["kept_accuracy"],
          report["lift"], report["yield"]]],
    )  # fmt: skip
    name = f"precision-math-{report['date']}.json"
    (ROOT / "benchmarks" / "results" / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: benchmarks/results/{name}")


if __name__ == "__main__":
    main()
