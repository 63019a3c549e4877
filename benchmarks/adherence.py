"""How well the ChainPoll context-adherence scorer separates supported from unsupported
answers, on a hand-labelled set (``benchmarks/data/adherence_labelled.jsonl``: 48 rows,
24 supported, 24 not; written by hand, not by the generator under test).

Reports ROC AUC of the score (the share of yes votes) against the label, and accuracy at
the threshold (default 0.67: supported iff score >= threshold), for each J. Votes are
journaled: vote 0 of J = 3 is the request of J = 1, and a re-run pays nothing.
A row whose votes were all unreadable scores 0 (counted as "not supported").

    python benchmarks/adherence.py [--provider local] [--judges 1 3] [--limit N]

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

DATA = ROOT / "benchmarks" / "data" / "adherence_labelled.jsonl"


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
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--chunk", type=int, default=4, help="rows between reports")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args()

    from tasks.generation import llm_config
    from tasks.llm.base import ProviderSpec
    from tasks.rag.adherence import TEMPLATE, ChainPollConfig, score_rows

    lines = args.data.read_text().splitlines()
    rows = _interleaved([json.loads(line) for line in lines if line.strip()])
    rows = rows[: args.limit] if args.limit else rows
    spec = ProviderSpec(kind=args.provider, model=args.model, base_url=args.base_url)
    top = max(args.judges)
    config = ChainPollConfig(llm=llm_config(spec, TEMPLATE), judges=top)
    started = time.monotonic()
    scored: list = []
    for i in range(0, len(rows), args.chunk):  # a report after every chunk: partial runs count
        scored += score_rows(rows[i : i + args.chunk], config)
        report = _report(rows[: len(scored)], scored, args.judges, args.threshold)
        report["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps({k: v for k, v in report.items() if k != "per_row"}), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))


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
    from tasks.rag.adherence import aggregate

    labels = [bool(r["supported"]) for r in rows]
    report: dict = {"rows": len(rows), "supported": sum(labels), "threshold": threshold}
    for j in sorted(judges):
        results = [aggregate(a.votes[:j]) for a, _ in scored]
        scores = [a.score if a.score is not None else 0.0 for a in results]
        correct = sum((s >= threshold) == y for s, y in zip(scores, labels, strict=True))
        report[f"J={j}"] = {
            "auroc": round(roc_auc(scores, labels), 3),
            "accuracy": round(correct / len(rows), 3),
            "unscored_rows": sum(a.score is None for a in results),
            "unreadable_votes": sum(v.supported is None for a in results for v in a.votes),
        }
        report.setdefault("per_row", {})[f"J={j}"] = [
            {"id": r["id"], "label": y, "score": s}
            for r, y, s in zip(rows, labels, scores, strict=True)
        ]
    sent = [r for _, rs in scored for r in rs if not r.cached]
    report["requests_sent"] = len(sent)
    report["completion_tokens"] = sum(r.usage.completion_tokens for r in sent)
    return report


if __name__ == "__main__":
    main()
