"""How often is a kept PHP translation actually right? Measured against HumanEval's
reference tests, translated to PHP, which Winnow never sees.

Data: the kept examples of a code SFT run on HumanEval problems (``precision.py`` writes
one: ``out/bench-precision/dataset``), i.e. exactly what the PHP recipe takes in real use,
verified Python with the model's own tests. Winnow translates solution and tests to PHP,
runs them, revises, checks coverage and faithfulness, and keeps. Then every first
translation and every kept one runs against HumanEval's ``check`` translated to PHP by
``benchmarks/_php_reference.py`` (asserts over literals; loops and helpers are left out
and counted), in the sandbox. A kept PHP example whose Python source already failed the
reference tests is reported apart: the translation was faithful to wrong code.

    python benchmarks/precision_php.py --source out/bench-precision/dataset
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, machine, print_table  # noqa: E402
from benchmarks._php_reference import php_function_name, php_reference_tests  # noqa: E402
from benchmarks.precision import (  # noqa: E402
    FENCE,
    humaneval,
    passes,
    run_of,
    run_winnow,
)

PHP_FENCE = FENCE.pattern.replace("python", "php")


def php_passes(
    solutions: list[tuple[str, str]], by_task: dict[str, dict[str, Any]]
) -> list[bool | None]:
    """Each (task id, PHP solution) against its reference checks; None where the checks
    cannot be built (no translatable assert, no function standing for the entry point)."""
    from tasks.sandbox.base import Limits
    from tasks.sandbox.select import get_sandbox
    from tasks.sandbox.verify import Case, verify_cases

    cases, where = [], []
    for i, (task_id, code) in enumerate(solutions):
        task = by_task[task_id]
        name = php_function_name(code, task["entry_point"])
        tests = php_reference_tests(task["test"], name) if name else None
        if tests is None or tests.checks == 0:
            continue
        cases.append(Case(id=str(i), solution=code, tests=tests.program))
        where.append(i)
    limits = Limits(cpu_s=10, wall_s=20, memory_mb=512)
    verdicts = verify_cases(cases, "php", get_sandbox("auto"), limits=limits)
    out: list[bool | None] = [None] * len(solutions)
    for i, verdict in zip(where, verdicts, strict=True):
        out[i] = verdict.passed
    return out


def first_translations(run_id: str) -> tuple[list[dict[str, Any]], int]:
    """The translations as the model first wrote them, and how many were unusable."""
    from tasks.store.catalog import Catalog
    from tasks.store.shards import iter_shards

    catalog = Catalog()
    paths = [s.path for s in catalog.stage_shards(run_id, "translate", "kept")]
    rows = [{"source_id": r["source_id"], "solution": r["solution"]} for r in iter_shards(paths)]
    return rows, len(catalog.rejections(run_id, stage="translate", limit=1_000_000))


def share(ok: list[bool | None]) -> tuple[int, int, float]:
    judged = [x for x in ok if x is not None]
    return sum(judged), len(judged), round(sum(judged) / max(1, len(judged)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT / "out/bench-precision/dataset")
    parser.add_argument("--rounds", type=int, default=2, help="revision rounds")
    parser.add_argument("--set", action="append", default=[], help="more recipe parameters")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-precision-php")
    args = parser.parse_args()

    by_task = {t["task_id"]: t for t in humaneval()}
    sources = [
        json.loads(line) for line in (args.source / "dataset.jsonl").read_text().splitlines()
    ]
    task_of = {s["id"]: s["metadata"]["source_id"] for s in sources}
    python_ok = dict(
        zip(
            task_of,
            passes(
                [(s["metadata"]["source_id"], FENCE.search(s["messages"][1]["content"]).group(1))  # type: ignore[union-attr]
                 for s in sources],
                by_task,
            ),
            strict=True,
        )
    )  # fmt: skip

    out = args.out / "dataset"
    args.out.mkdir(parents=True, exist_ok=True)
    # every source row, at the recipe's own output budget (not the embedded model's small
    # defaults, which would translate 3 rows)
    sets = [f"source={args.source}", f"limit={len(sources)}", "max_tokens=700"]
    sets += [f"max_revision_rounds={args.rounds}", *args.set]
    wall = run_winnow("php-translation", out, sets)
    run = run_of("php-translation", out)

    firsts, unusable = first_translations(run["run_id"])
    kept = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    fence = re.compile(PHP_FENCE, re.DOTALL)
    kept_code = [
        (k["metadata"]["source_id"], fence.search(k["messages"][1]["content"]).group(1))  # type: ignore[union-attr]
        for k in kept
    ]
    first_ok = php_passes([(task_of[f["source_id"]], f["solution"]) for f in firsts], by_task)
    kept_ok = php_passes([(task_of[s], code) for s, code in kept_code], by_task)
    first_pass, first_judged, _ = share(first_ok)
    first_judged += unusable  # an unusable translation counts as a fail
    kept_pass, kept_judged, precision = share(kept_ok)
    good_python = [ok for (s, _), ok in zip(kept_code, kept_ok, strict=True) if python_ok[s]]
    funnel = json.loads((out / "funnel.json").read_text())
    revised = sum(bool(k["metadata"]["revision_rounds"]) for k in kept)
    raw = round(first_pass / max(1, first_judged), 3)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "data": f"kept code SFT examples of {args.source} ({len(sources)} rows, HumanEval "
        "problems), checked against HumanEval's reference tests translated to PHP",
        "params": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "model": run["models"],
        "run_id": run["run_id"],
        "wall_s": round(wall, 1),
        "python_sources": len(sources),
        "python_sources_passing_reference": sum(python_ok.values()),
        "first_translations": first_judged,
        "unusable_translations": unusable,
        "first_translations_passing": first_pass,
        "raw_pass_rate": raw,
        "kept": len(kept),
        "kept_with_reference_checks": kept_judged,
        "kept_passing": kept_pass,
        "kept_pass_rate": precision,
        "kept_pass_rate_where_the_python_was_right": share(good_python)[2],
        "lift": round(precision - raw, 3),
        "yield": round(len(kept) / max(1, len(sources)), 3),
        "kept_fixed_by_revision": revised,
        "share_fixed_by_revision": round(revised / max(1, len(kept)), 3),
        "funnel": [(s["stage"], s["n_in"], s["n_out"]) for s in funnel["stages"]],
        "kept_failing_reference": [
            task_of[s] for (s, _), ok in zip(kept_code, kept_ok, strict=True) if ok is False
        ],
    }
    print(f"\nprecision of kept PHP translations; {report['machine']}")
    print(f"model {report['model']}; K = {args.rounds}; {wall:.0f} s; {report['data']}")
    print_table(
        ["sources", "first pass", "kept", "kept pass", "lift", "yield", "revised"],
        [[len(sources), raw, len(kept), precision, report["lift"], report["yield"],
          report["share_fixed_by_revision"]]],
    )  # fmt: skip
    name = f"precision-php-{report['date']}.json"
    (ROOT / "benchmarks" / "results" / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: benchmarks/results/{name}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
