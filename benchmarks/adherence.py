"""How well the context-adherence scorer separates supported from unsupported answers, on
hand-labelled sets written by hand, not by the generator under test:

- ``benchmarks/data/adherence_labelled.jsonl`` (48 rows, 24 supported): the set the
  grounding check's rules and its 0.75 bar were chosen on, so its figures flatter it;
- ``benchmarks/data/adherence_heldout.jsonl`` (36 rows, 18 supported): written after the
  check was fixed, never used to tune it;
- with ``--data``, ``benchmarks/data/halueval_qa_100.jsonl`` (100 rows, 50 supported): the
  public HaluEval QA (RUCAIBox/HaluEval, MIT licence), rows 0-99 of
  ``generation/qa/qa_one-turn_data.json``, the right answer on even rows and the
  hallucinated one on odd rows; never used to choose anything.

Every row gets J judge votes (the grounding check off, so the judge is measured alone),
then three scorers are reported per set, each as ROC AUC of the score against the label and
accuracy at the threshold (default 0.67: supported iff score >= threshold):

- ``judge J=j``: ChainPoll alone, the share of yes among the first j votes;
- ``grounding``: the check by code alone (1 if grounded, else 0);
- ``combined J=j``: what the recipe does: 0 if not grounded, else the judge's share.

With ``--probability`` a fourth scorer is measured next to them, with its time per row:

- ``probability``: `winnow adherence --method probability`: P(yes) against P(no) read from
  the scorer's next token for each sentence of the answer ("Document … Question … Claim"),
  the weakest claim's, 0 for a number absent from the context; its threshold is
  calibrated on the first data set (the tuning set) and applied unchanged to the others.

Votes are journaled: vote 0 of J = 3 is the request of J = 1, and a re-run pays nothing.
A row whose votes were all unreadable scores 0 (counted as "not supported").

    python benchmarks/adherence.py [--provider local] [--judges 1 3] [--limit N] [--probability]

The published anchor: ChainPoll's aggregate AUROC of 0.781 (Galileo, GPT-3.5 judge).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = [
    ROOT / "benchmarks" / "data" / "adherence_labelled.jsonl",
    ROOT / "benchmarks" / "data" / "adherence_heldout.jsonl",
]


def roc_auc(scores: list[float], labels: list[bool]) -> float:
    """Probability that a supported row outscores an unsupported one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="local")
    parser.add_argument("--model", default="")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--judges", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--threshold", type=float, default=0.67)
    parser.add_argument("--data", type=Path, nargs="+", default=DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--chunk", type=int, default=4, help="rows between reports")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--probability", action="store_true", help="measure P(supported) too")
    parser.add_argument("--no-votes", action="store_true", help="skip the sampled judge")
    args = parser.parse_args()
    if args.probability:
        probability_reports = _probability(args)
        if args.no_votes:
            return
    else:
        probability_reports = {}

    from tasks.llm.base import ProviderSpec
    from tasks.pipeline.llm_stage import llm_config
    from tasks.recipes.rag_qa.adherence import TEMPLATE, ChainPollConfig, score_rows

    spec = ProviderSpec(kind=args.provider, model=args.model, base_url=args.base_url)
    top = max(args.judges)
    # the judge is measured alone: every row gets its votes, grounding is applied afterwards
    config = ChainPollConfig(llm=llm_config(spec, TEMPLATE), judges=top, grounding_min_share=0)
    started = time.monotonic()
    reports = {}
    for path in args.data:
        lines = path.read_text().splitlines()
        rows = _interleaved([json.loads(line) for line in lines if line.strip()])
        rows = rows[: args.limit] if args.limit else rows
        scored: list = []
        for i in range(0, len(rows), args.chunk):  # a report per chunk: partial runs count
            scored += score_rows(rows[i : i + args.chunk], config)
            report = _report(rows[: len(scored)], scored, args.judges, args.threshold)
            report["seconds"] = round(time.monotonic() - started, 1)
            reports[path.name] = report
            if path.name in probability_reports:
                report["probability"] = probability_reports[path.name]
            print(path.name, json.dumps(_brief(report)), flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(reports, indent=2))
    for name, report in reports.items():
        _table(name, report)


def _probability(args: argparse.Namespace) -> dict:
    """Score every set with P(supported) per claim; the threshold from the first set."""
    from tasks.llm.base import ProviderSpec
    from tasks.recipes.rag_qa.probability import (
        ProbabilityConfig,
        calibrate_threshold,
        score_rows_by_probability,
    )

    spec = ProviderSpec(kind=args.provider, model=args.model, base_url=args.base_url)
    config = ProbabilityConfig(scorer=spec)
    threshold, out = None, {}
    for path in args.data:
        lines = path.read_text().splitlines()
        rows = _interleaved([json.loads(line) for line in lines if line.strip()])
        rows = rows[: args.limit] if args.limit else rows
        started = time.monotonic()
        scored = score_rows_by_probability(rows, config)
        seconds = time.monotonic() - started
        scores = [a.score if a.score is not None else 0.0 for a, _ in scored]
        labels = [bool(r["supported"]) for r in rows]
        if threshold is None:
            threshold = calibrate_threshold(scores, labels)
        correct = sum((x >= threshold) == y for x, y in zip(scores, labels, strict=True))
        out[path.name] = {
            "auroc": round(roc_auc(scores, labels), 3),
            "accuracy": round(correct / len(rows), 3),
            "threshold": threshold,
            "calibrated_on": args.data[0].name,
            "seconds_per_row": round(seconds / len(rows), 2),
            "fresh_calls": sum(not c.cached for _, calls in scored for c in calls),
        }
        print(path.name, "probability", json.dumps(out[path.name]), flush=True)
    return out


def _brief(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "per_row"}


def _table(name: str, report: dict) -> None:
    print(f"\n{name}: {report['rows']} rows, {report['supported']} supported, "
          f"threshold {report['threshold']}")  # fmt: skip
    print(f"  {'scorer':<14} {'AUROC':>6} {'accuracy':>9}")
    for key, value in report.items():
        if isinstance(value, dict) and "auroc" in value:
            print(f"  {key:<14} {value['auroc']:>6.3f} {value['accuracy']:>9.3f}")


def _interleaved(rows: list[dict]) -> list[dict]:
    """Supported and unsupported rows alternating, so any prefix is balanced."""
    pos = [r for r in rows if r["supported"]]
    neg = [r for r in rows if not r["supported"]]
    out = []
    for a, b in zip(pos, neg, strict=False):
        out += [a, b]
    return out + pos[len(neg) :] + neg[len(pos) :]


def _report(rows: list[dict], scored: list, judges: list[int], threshold: float) -> dict:
    """Metrics for each J from the first J votes of every row (vote j of a larger J is
    the same request as vote j of a smaller one, so this is what J alone would give)."""
    from tasks.recipes.rag_qa.adherence import aggregate
    from tasks.recipes.rag_qa.grounding import check_grounding

    labels = [bool(r["supported"]) for r in rows]
    grounded = [check_grounding(r["context"], r["question"], r["answer"]).grounded for r in rows]
    report: dict = {"rows": len(rows), "supported": sum(labels), "threshold": threshold}

    def add(name: str, scores: list[float], extra: dict | None = None) -> None:
        correct = sum((s >= threshold) == y for s, y in zip(scores, labels, strict=True))
        report[name] = {
            "auroc": round(roc_auc(scores, labels), 3),
            "accuracy": round(correct / len(rows), 3),
            **(extra or {}),
        }
        report.setdefault("per_row", {})[name] = [
            {"id": r["id"], "label": y, "score": s}
            for r, y, s in zip(rows, labels, scores, strict=True)
        ]

    add("grounding", [1.0 if g else 0.0 for g in grounded])
    for j in sorted(judges):
        results = [aggregate(a.votes[:j]) for a, _ in scored]
        scores = [a.score if a.score is not None else 0.0 for a in results]
        add(f"judge J={j}", scores, {
            "unscored_rows": sum(a.score is None for a in results),
            "unreadable_votes": sum(v.supported is None for a in results for v in a.votes),
            "mean_score": round(sum(scores) / len(scores), 3),
        })  # fmt: skip
        add(f"combined J={j}", [s if g else 0.0 for s, g in zip(scores, grounded, strict=True)])
    sent = [r for _, rs in scored for r in rs if not r.cached]
    report["requests_sent"] = len(sent)
    report["completion_tokens"] = sum(r.usage.completion_tokens for r in sent)
    return report


if __name__ == "__main__":
    main()
