"""Feedback to the rubric: which judge criteria reject examples the target model would
have learned from, and which let through examples that teach it nothing.

A judge decides by criteria (code SFT: correctness and style; RAG QA: grounding and
adherence). Instruction-following difficulty (IFD) and training utility measure what an
example teaches (:mod:`tasks.curation.ifd`, :mod:`tasks.curation.utility`). Relating the
two tells a data engineer where the rubric is too strict or too lenient, with a number.

Curation scores only what the judge kept, so the judge's rejections are scored too, by a
stage off the funnel (``rubric_feedback_score``, run with ``Run.side_stage``): the same
scorer, the same texts as the curation steps would send (so the same journal entries: a
re-run pays nothing), every call recorded and costed; its rows are neither published nor
counted in the funnel, and stay rejected. Only rows some criterion failed are scored (a
judge answer that could not be read is no verdict on a criterion). Utility is scored on
the rows IFD keeps by range, as curation scores it only on those.

**The rule.** A scored example *teaches* when every score it has says so: IFD below 1
(the instruction helps predict the answer; at or above 1 it teaches nothing, the Cherry
LLM paper's reading) and utility above 0 (shown as a demonstration, it makes verified
answers likelier). It *teaches nothing* when one of its scores says no. Rows with no score
(unscorable) count in neither. Then, per criterion:

- ``rejected``: rows that failed the criterion and that the judge rejected; ``alone``:
  of those, the rows this criterion alone failed (what dropping it from the rubric would
  let through); ``would_teach`` / ``would_teach_alone``: how many of each teach;
- ``kept``: rows that passed the criterion and that the judge kept (and that reached the
  scorer: after dedup); ``teach_nothing``: how many of them teach nothing.

Each side also carries the count, mean and median of each score. ``rubric_feedback``
computes the table from plain rows, with no run and no Prefect.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from tasks.curation.common import get_path, number
from tasks.curation.ifd import IFDConfig, ifd_score_batch
from tasks.curation.utility import UtilityConfig, utility_score_batch
from tasks.pipeline.stage import Stage, StageContext, StageResult

IFD_TEACHES_BELOW = 1.0  # IFD >= 1: the instruction does not help; the pair teaches nothing
UTILITY_TEACHES_ABOVE = 0.0  # utility <= 0: no help to the dev set
RULE = "teaches: IFD < 1 and utility > 0, each where scored; teaches nothing: either fails"
SCORES = ("ifd", "utility")


class Criterion(BaseModel):
    """One item of a judge's rubric, read from a judged record: it passes when the value
    at ``field`` is one of ``passes``, or, with ``min``, a number at least ``min``. A
    missing value is no verdict (the row does not count for this criterion)."""

    name: str
    field: str = Field(description="dotted path in the judged record, e.g. judge.style")
    passes: list[Any] = Field(default_factory=lambda: ["pass"])
    min: float | None = None
    after: str | None = Field(
        None,
        description="a criterion checked before this one: where it failed, this one was "
        "never asked (RAG QA's judges vote only on answers the check by code passed)",
    )

    def passed(self, row: dict[str, Any]) -> bool | None:
        value = get_path(row, self.field)
        if value is None:
            return None
        if self.min is not None:
            score = number(value)
            return None if score is None else score >= self.min
        return value in self.passes


class Rubric(BaseModel):
    """A recipe's judge: the stage whose rejections are scored, and its criteria."""

    stage: str
    criteria: list[Criterion] = Field(min_length=1)

    def verdicts(self, row: dict[str, Any]) -> dict[str, bool | None]:
        """Each criterion's verdict on a judged record (None: none)."""
        out: dict[str, bool | None] = {}
        for c in self.criteria:
            out[c.name] = None if c.after and out.get(c.after) is False else c.passed(row)
        return out

    def failed(self, row: dict[str, Any]) -> list[str]:
        return [name for name, ok in self.verdicts(row).items() if ok is False]


class FeedbackConfig(BaseModel):
    """The side stage's configuration: the rubric, and the curation scorers that are on."""

    rubric: Rubric
    ifd: IFDConfig | None = None
    utility: UtilityConfig | None = None


# --- scoring the judge's rejections ---------------------------------------------------------


def _ifd_in_range(row: dict[str, Any], config: IFDConfig | None) -> bool:
    """Whether utility scores this row: curation scores utility on the rows IFD keeps by
    range (its top-fraction cut is relative to the whole kept set: not applied here)."""
    if config is None:
        return True
    ifd = number((row.get("metadata") or {}).get("ifd"))
    return ifd is not None and config.min_ifd <= ifd < config.max_ifd


def feedback_score_batch(
    rows: list[dict[str, Any]], config: FeedbackConfig, ctx: StageContext
) -> StageResult:
    """Rejection rows of the judge stage in; their records out, with ``metadata.ifd`` and
    ``metadata.utility`` where scored and ``judge_rejection`` (stage, reason). Nothing is
    rejected here: a row that cannot be scored passes on unscored. The scorers' calls are
    this stage's (a failed one leaves the shard incomplete, so the next run asks again)."""
    out = StageResult()
    records = []
    for row in rows:
        record = row.get("record") or {}
        if config.rubric.failed(record):  # else a malformed verdict, not the rubric's doing
            why = {"stage": row.get("stage", ""), "reason": row.get("reason", "")}
            records.append(dict(record, judge_rejection=why))
    quiet = StageContext(run=ctx.run, stage=ctx.stage, report=False)  # counted below
    if config.ifd is not None and records:
        result = ifd_score_batch(records, config.ifd, quiet)
        out.calls += result.calls
        records = _merge(records, result.kept, range(len(records)))
    if config.utility is not None:
        todo = [i for i, r in enumerate(records) if _ifd_in_range(r, config.ifd)]
        if todo:
            result = utility_score_batch([records[i] for i in todo], config.utility, quiet)
            out.calls += result.calls
            records = _merge(records, result.kept, todo)
    ctx.progress(len(rows))
    out.kept = records
    out.n_in = len(records)  # rows no criterion failed are not passed on: not units here
    return out


def _merge(
    records: list[dict[str, Any]], scored: list[dict[str, Any]], where: Iterable[int]
) -> list[dict[str, Any]]:
    """``records`` with those at ``where`` replaced by their scored version (by id);
    a record the scorer rejected stays as it was, unscored."""
    by_id = {r.get("id"): r for r in scored}
    merged = list(records)
    for i in where:
        merged[i] = by_id.get(merged[i].get("id"), merged[i])
    return merged


# Its key follows the scorers' code too (in other modules), as their own stages' keys do.
FEEDBACK_SCORE = Stage(
    "rubric_feedback_score",
    feedback_score_batch,
    code=(feedback_score_batch, ifd_score_batch, utility_score_batch),
)


# --- the table ------------------------------------------------------------------------------


def teaches(row: dict[str, Any]) -> bool | None:
    """True: every score the row has says it teaches; False: one says it does not;
    None: no score."""
    meta = row.get("metadata") or {}
    ifd, utility = number(meta.get("ifd")), number(meta.get("utility"))
    if ifd is None and utility is None:
        return None
    if ifd is not None and ifd >= IFD_TEACHES_BELOW:
        return False
    return not (utility is not None and utility <= UTILITY_TEACHES_ABOVE)


class _Side:
    """Counts and score values of one side (rejected or kept) of one criterion."""

    def __init__(self) -> None:
        self.n = 0
        self.alone = 0
        self.teach = 0
        self.teach_alone = 0
        self.nothing = 0
        self.values: dict[str, list[float]] = {s: [] for s in SCORES}

    def add(self, row: dict[str, Any], alone: bool = False) -> None:
        self.n += 1
        self.alone += alone
        verdict = teaches(row)
        self.teach += verdict is True
        self.teach_alone += verdict is True and alone
        self.nothing += verdict is False
        meta = row.get("metadata") or {}
        for s in SCORES:
            value = number(meta.get(s))
            if value is not None:
                self.values[s].append(value)

    def scores(self) -> dict[str, dict[str, Any]]:
        out = {}
        for s, values in self.values.items():
            out[s] = {
                "n": len(values),
                "mean": round(statistics.fmean(values), 6) if values else None,
                "median": round(statistics.median(values), 6) if values else None,
            }
        return out

    def rejected(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "alone": self.alone,
            "would_teach": self.teach,
            "would_teach_alone": self.teach_alone,
            **self.scores(),
        }

    def kept(self) -> dict[str, Any]:
        return {"n": self.n, "teach_nothing": self.nothing, **self.scores()}


def rubric_feedback(
    rejected: Iterable[dict[str, Any]], kept: Iterable[dict[str, Any]], rubric: Rubric
) -> dict[str, Any]:
    """The table of ``funnel.json``'s ``rubric_feedback``: ``rejected`` are the judge's
    rejected records, scored (``feedback_score_batch``'s rows), ``kept`` the records it
    kept, as curation scored them (``metadata.ifd``, ``metadata.utility``)."""
    names = [c.name for c in rubric.criteria]
    rej = {n: _Side() for n in names}
    kep = {n: _Side() for n in names}
    judge_rej, judge_kep = _Side(), _Side()
    for row in rejected:
        failed = rubric.failed(row)
        if not failed:
            continue
        judge_rej.add(row)
        for name in failed:
            rej[name].add(row, alone=len(failed) == 1)
    for row in kept:
        judge_kep.add(row)
        for name, ok in rubric.verdicts(row).items():
            if ok is True:
                kep[name].add(row)
    return {
        "judge_stage": rubric.stage,
        "rule": RULE,
        "judge": {"rejected": judge_rej.rejected(), "kept": judge_kep.kept()},
        "criteria": [
            {"criterion": n, "rejected": rej[n].rejected(), "kept": kep[n].kept()} for n in names
        ],
    }
