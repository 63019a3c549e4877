"""Which score tells a right code answer from a wrong one? Each score Winnow can put on an
example, measured on code candidates whose correctness is known from tests Winnow never saw.

Data: the first candidates (the solutions as the model first wrote them, before any
revision) of the code SFT precision runs on HumanEval (``benchmarks/precision.py``; by
default the runs on problems 0–19 and 20–39 recorded in ``benchmarks/results``). A
candidate is *correct* if it passes HumanEval's hidden reference tests in the sandbox.

Scores, each an AUROC against correctness (0.5 = no signal; below 0.5 = the score points
the wrong way), with its cost in seconds per example:

- ``own tests``: the candidate passes the tests the model wrote with it (what `execute`
  decides before revision), 1 or 0;
- ``judge``: the recipe's judge (correctness + style, 0–2) asked about every candidate,
  and ``judge correctness`` alone (1 or 0);
- ``generation logprob``: the mean token log-probability the generator gave its own answer,
  recorded at generation time for free (no request), where the run recorded it; and
  ``answer logprob | instruction``: the same read by the scorer (minus the log of the
  conditioned perplexity that IFD computes anyway), for runs made before logprobs were
  recorded;
- ``IFD``: PPL(answer | instruction) / PPL(answer) from the scorer (`winnow curate ifd`);
  ``-IFD`` is reported too, since a low IFD means the instruction made the answer likely;
- ``utility``: the drop in the scorer's loss on verified dev examples when the candidate is
  the one-shot demonstration (`winnow curate utility`); the dev examples are kept examples
  of the *other* run that pass the hidden tests, so no candidate is scored on its own
  problem.

Every score request is journaled, so a re-run pays nothing; the seconds reported are those
of the first run (``--fresh`` scores in an empty journal to time them again).

    python benchmarks/score_signal.py [--runs RESULT.json ...] [--dev-sample 2] [--out F]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, machine  # noqa: E402
from benchmarks.adherence import roc_auc  # noqa: E402
from benchmarks.precision import humaneval, passes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RUNS = [
    RESULTS / "precision-code-2026-11-30-dual.json",  # HumanEval 0..19
    RESULTS / "precision-code-2026-11-30-dual-from20.json",  # HumanEval 20..39
]


def candidates(run_id: str) -> list[dict[str, Any]]:
    """The run's first candidates, whole records, as the solutions stage kept them."""
    from tasks.store.catalog import Catalog
    from tasks.store.shards import iter_shards

    paths = [s.path for s in Catalog().stage_shards(run_id, "solutions", "kept")]
    return list(iter_shards(paths))


def kept_examples(run_id: str) -> list[dict[str, Any]]:
    """The run's published examples (chat rows)."""
    from tasks.store.catalog import Catalog

    [run] = [r for r in Catalog().runs(limit=500) if r["run_id"] == run_id]
    path = Path(run["out_dir"]) / "dataset.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def own_tests_pass(rows: list[dict[str, Any]]) -> list[bool]:
    """Each candidate against the tests it came with, in the sandbox."""
    from tasks.sandbox.base import Limits
    from tasks.sandbox.select import get_sandbox
    from tasks.sandbox.verify import Case, verify_cases

    cases = [Case(id=str(i), solution=r["solution"], tests=r["tests"]) for i, r in enumerate(rows)]
    limits = Limits(cpu_s=10, wall_s=20, memory_mb=512)
    return [v.passed for v in verify_cases(cases, "python", get_sandbox("auto"), limits=limits)]


def generation_logprob(row: dict[str, Any]) -> float | None:
    """The mean token log-probability recorded with the candidate's generation, if any."""
    value = (row.get("provenance") or {}).get("mean_logprob")
    return float(value) if isinstance(value, int | float) else None


def judge_scores(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The recipe's judge on every candidate (min score 0: every verdict is read)."""
    from tasks.pipeline.stage import RunInfo, StageContext
    from tasks.recipes.code_sft.recipe import CodeSFTParams, plan
    from tasks.recipes.code_sft.stages import JUDGE, JudgeConfig

    config = JudgeConfig(llm=plan(CodeSFTParams()).judge.llm, min_score=0)
    ctx = StageContext(run=RunInfo(run_id="bench-signal", recipe="code-sft"), stage="judge")
    by_id: dict[str, dict[str, Any]] = {}
    for i in range(0, len(rows), 8):
        result = JUDGE.fn(rows[i : i + 8], config, ctx)
        for r in [*result.kept, *result.rejected]:
            record = r.get("record", r) if "judge" not in r else r
            by_id[record["id"]] = record.get("judge") or {}
    total = [float(by_id.get(r["id"], {}).get("score", 0)) for r in rows]
    correct = [float(by_id.get(r["id"], {}).get("correctness") == "pass") for r in rows]
    return total, correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", default=RUNS)
    parser.add_argument("--dev-sample", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="candidates per run")
    parser.add_argument("--no-judge", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="score in an empty journal")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from tasks.curation.ifd import IFDConfig, ifd_score_batch
    from tasks.curation.utility import UtilityConfig, load_dev, utility_score_batch
    from tasks.pipeline.stage import RunInfo, StageContext
    from tasks.recipes.code_sft.recipe import to_example

    results = [json.loads(p.read_text()) for p in args.runs]
    by_task = {t["task_id"]: t for t in humaneval()}
    rows: list[dict[str, Any]] = []
    dev_of: dict[str, list[dict[str, Any]]] = {}
    for i, result in enumerate(results):
        run_id = result["run_id"]
        found = candidates(run_id)[: args.limit]
        rows += [{**r, "_run": run_id} for r in found]
        # dev: verified kept examples of another run (problems this run never saw)
        other = results[(i + 1) % len(results)]["run_id"]
        kept = kept_examples(other)
        ok = passes(
            [(k["metadata"]["source_id"], _code(k)) for k in kept],
            by_task,
        )
        dev_of[run_id] = [k for k, good in zip(kept, ok, strict=True) if good]
        print(f"{run_id}: {len(found)} candidates; dev from {other}: {len(dev_of[run_id])}")

    labels = passes([(r["source_id"], r["solution"]) for r in rows], by_task)
    print(f"{len(rows)} candidates, {sum(labels)} correct by the hidden tests", flush=True)
    scores: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}

    scores["own tests"] = [float(x) for x in own_tests_pass(rows)]
    logprobs = [generation_logprob(r) for r in rows]
    if all(x is not None for x in logprobs):
        scores["generation logprob"] = [float(x) for x in logprobs]  # type: ignore[arg-type]
    else:
        print(f"generation logprob: recorded for {sum(x is not None for x in logprobs)} only")

    if args.fresh:
        os.environ["WINNOW_PROJECT_DIR"] = tempfile.mkdtemp(prefix="winnow-signal-")
    chats = [to_example({**r, "explanation": r.get("explanation", "")}) for r in rows]
    ctx = StageContext(run=RunInfo(run_id="bench-signal", recipe="bench"), stage="score")

    started = time.monotonic()
    out = ifd_score_batch(chats, IFDConfig(), ctx)
    seconds["IFD"] = time.monotonic() - started
    ifd = {r["id"]: r["metadata"] for r in out.kept}
    unscored = {"ifd": 1.0, "ifd_ppl": {"conditioned": float("inf")}}
    scores["IFD"] = [float(ifd.get(c["id"], unscored)["ifd"]) for c in chats]
    scores["-IFD"] = [-x for x in scores["IFD"]]
    scores["answer logprob | instruction"] = [
        -math.log(ifd.get(c["id"], unscored)["ifd_ppl"]["conditioned"]) for c in chats
    ]
    seconds["answer logprob | instruction"] = seconds["IFD"]
    print("IFD", f"{seconds['IFD'] / len(chats):.2f} s/example", flush=True)

    started = time.monotonic()
    utility: dict[str, float] = {}
    for run_id, dev in dev_of.items():
        mine = [c for c, r in zip(chats, rows, strict=True) if r["_run"] == run_id]
        config = UtilityConfig(dev=load_dev(dev), dev_sample=args.dev_sample)
        got = utility_score_batch(mine, config, ctx)
        utility |= {r["id"]: r["metadata"]["utility"] for r in got.kept}
    seconds["utility"] = time.monotonic() - started
    scores["utility"] = [float(utility.get(c["id"], 0.0)) for c in chats]
    print("utility", f"{seconds['utility'] / len(chats):.2f} s/example", flush=True)

    if not args.no_judge:
        started = time.monotonic()
        scores["judge"], scores["judge correctness"] = judge_scores(rows)
        seconds["judge"] = time.monotonic() - started
        print("judge", f"{seconds['judge'] / len(rows):.2f} s/example", flush=True)

    report: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "data": "first candidates of the code SFT precision runs "
        + ", ".join(f"{r['run_id']} ({r['data']})" for r in results),
        "candidates": len(rows),
        "correct": sum(labels),
        "dev_sample": args.dev_sample,
        "scores": {
            name: {
                "auroc": round(roc_auc(values, labels), 3),
                "seconds_per_example": round(seconds[name.lstrip("-")] / len(rows), 2)
                if name.lstrip("-") in seconds
                else None,
            }
            for name, values in scores.items()
        },
        "per_row": [
            {"id": r["id"], "source_id": r["source_id"], "correct": y}
            | {name: values[i] for name, values in scores.items()}
            for i, (r, y) in enumerate(zip(rows, labels, strict=True))
        ],
    }
    print(f"\n{len(rows)} candidates, {sum(labels)} correct (hidden tests)")
    print(f"  {'score':<20} {'AUROC':>6} {'s/example':>10}")
    for name, value in report["scores"].items():
        cost = value["seconds_per_example"]
        print(f"  {name:<20} {value['auroc']:>6.3f} {'' if cost is None else cost:>10}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


def _code(example: dict[str, Any]) -> str:
    """The solution code of a published code SFT example (its first fenced block)."""
    text = example["messages"][-1]["content"]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


if __name__ == "__main__":
    main()
