"""The rubric-feedback table as a person reads it: one row per judge criterion (and one
for the judge as a whole), the same columns in ``report.html``, the run's summary on its
Prefect page and ``winnow show``. The figures come from ``funnel.json``'s
``rubric_feedback`` (made by ``tasks.curation.rubric_feedback``); this module only lays
them out, so every view says the same thing."""

from __future__ import annotations

from typing import Any

SCORE_NAMES = {"ifd": "IFD", "utility": "utility"}
HOW_TO_READ = (
    "rejected: rows the criterion failed and the judge rejected (alone: it was their only "
    "failed criterion); would teach: of those, rows whose scores say the target model "
    "learns from them (IFD < 1 and utility > 0, each where scored). kept: rows the "
    "criterion passed and the judge kept; teach nothing: IFD >= 1 or utility <= 0. "
    "Score columns: mean (median) over the rows scored."
)


def _scores_present(feedback: dict[str, Any]) -> list[str]:
    """The scores this run had (IFD, utility or both): only those get columns."""
    entries = [feedback.get("judge") or {}, *(feedback.get("criteria") or [])]
    sides = [e.get(part) or {} for e in entries for part in ("rejected", "kept")]
    return [s for s in SCORE_NAMES if any((side.get(s) or {}).get("n") for side in sides)]


def _stat(side: dict[str, Any], score: str) -> str:
    s = side.get(score) or {}
    if not s.get("n"):
        return "-"
    return f"{s['mean']:.3f} ({s['median']:.3f})"


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.0%})" if whole else "0"


def feedback_table(feedback: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table: criterion, rejected, alone, would teach (alone),
    the rejected rows' scores, kept, teach nothing, the kept rows' scores."""
    scores = _scores_present(feedback)
    head = ["criterion", "rejected", "alone", "would teach", "would teach (alone)"]
    head += [f"rejected {SCORE_NAMES[s]}" for s in scores]
    head += ["kept", "teach nothing"]
    head += [f"kept {SCORE_NAMES[s]}" for s in scores]
    rows = []
    judge = feedback.get("judge") or {}
    named = [(c["criterion"], c) for c in feedback.get("criteria") or []]
    for name, entry in [*named, ("(judge: any criterion)", judge)]:
        rej, kept = entry.get("rejected") or {}, entry.get("kept") or {}
        n_rej, n_kept = int(rej.get("n") or 0), int(kept.get("n") or 0)
        is_judge = entry is judge
        row = [
            name,
            str(n_rej),
            "" if is_judge else str(rej.get("alone", 0)),
            _share(int(rej.get("would_teach") or 0), n_rej),
            "" if is_judge else str(rej.get("would_teach_alone", 0)),
            *[_stat(rej, s) for s in scores],
            str(n_kept),
            _share(int(kept.get("teach_nothing") or 0), n_kept),
            *[_stat(kept, s) for s in scores],
        ]
        rows.append(row)
    return head, rows
