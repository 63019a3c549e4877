"""Curation steps a recipe turns on with parameters: contamination, near-dup, semantic dedup,
instruction-following difficulty (IFD), training utility, and the rubric feedback that
relates the recipe's judge criteria to those scores (``rubric_feedback_of``).

A recipe mixes ``CurationParams`` into its parameters, builds a ``CurationPlan`` in its
plan (so a missing eval folder is reported before any request), and calls ``curate`` on
its final output: one line in the flow, which returns the output to publish, each step
recorded in the funnel like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from tasks.curation.contamination import ContaminationConfig, contamination_stage
from tasks.curation.ifd import IFDConfig, ifd_score_stage, ifd_select_stage
from tasks.curation.minhash import MinHashDedupConfig, minhash_dedup_stage
from tasks.curation.rubric_feedback import FEEDBACK_SCORE, FeedbackConfig, Rubric, rubric_feedback
from tasks.curation.semantic import SemanticDedupConfig, semantic_dedup_stage
from tasks.curation.utility import (
    UtilityConfig,
    load_dev,
    utility_score_stage,
    utility_select_stage,
)
from tasks.pipeline.run import Run
from tasks.pipeline.stage import StageOutput


class CurationParams(BaseModel):
    contamination_against: str | None = Field(
        None, description="folder of eval sets: drop rows sharing a 13-gram with them"
    )
    near_dup_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="MinHash Jaccard (character 4-grams) at which a row is a near-duplicate; "
        "0.5 catches one- or two-word edits of short texts (off)",
    )
    semantic_dedup_threshold: float | None = Field(
        None, gt=0, le=1, description="MiniLM cosine at which a row is a semantic duplicate (off)"
    )
    ifd_max: float | None = Field(
        None,
        gt=0,
        description="score instruction-following difficulty with the embedded model and "
        "keep rows with IFD below this; 1 drops the rows whose instruction does not help "
        "predict the answer (off)",
    )
    ifd_top_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="with IFD on, keep only this most difficult fraction of those rows (off)",
    )

    utility_dev: str | None = Field(
        None,
        description="verified chat rows (JSON Lines): score each row's training utility "
        "on them (one-shot loss drop, embedded model) and keep rows that help (off)",
    )
    utility_top_fraction: float | None = Field(
        None, gt=0, le=1, description="with utility on, keep only this most useful fraction"
    )
    rubric_feedback: bool = Field(
        False,
        description="with IFD or utility on, score the judge's rejections too (they stay "
        "rejected) and relate each judge criterion to the scores in funnel.json and the "
        "report: which criteria reject rows that would teach, which keep rows that teach "
        "nothing (off: it pays for scoring the rejections)",
    )


SCORE_FIELDS = ("ifd", "ifd_ppl", "utility", "utility_detail")


def scores_of(row: dict[str, Any]) -> dict[str, Any]:
    """The scores curation wrote into a row's ``metadata`` (IFD, utility), for the
    published example's metadata: what ``winnow curate ifd`` / ``utility`` write too."""
    meta = row.get("metadata") or {}
    return {k: meta[k] for k in SCORE_FIELDS if meta.get(k) is not None}


class CurationPlan(BaseModel):
    contamination: ContaminationConfig | None = None
    near_dup: MinHashDedupConfig | None = None
    semantic: SemanticDedupConfig | None = None
    ifd: IFDConfig | None = None
    utility: UtilityConfig | None = None
    feedback: FeedbackConfig | None = None


def plan_curation(
    params: CurationParams,
    fields: list[str],
    semantic_field: str,
    score_field: str | None,
    rubric: Rubric | None = None,
) -> CurationPlan:
    """The steps that are on. ``rubric``: the recipe's judge criteria, which
    ``rubric_feedback`` relates to the scores (an error if the recipe has none, or if
    neither IFD nor utility is on: there would be nothing to relate them to)."""
    ifd, utility = _ifd(params, fields), _utility(params, fields)
    return CurationPlan(
        contamination=ContaminationConfig(fields=fields, against=params.contamination_against)
        if params.contamination_against
        else None,
        near_dup=MinHashDedupConfig(fields=fields, threshold=params.near_dup_threshold)
        if params.near_dup_threshold
        else None,
        semantic=SemanticDedupConfig(
            field=semantic_field, threshold=params.semantic_dedup_threshold, score_field=score_field
        )
        if params.semantic_dedup_threshold
        else None,
        ifd=ifd,
        utility=utility,
        feedback=_feedback(params, rubric, ifd, utility),
    )


def _feedback(
    params: CurationParams,
    rubric: Rubric | None,
    ifd: IFDConfig | None,
    utility: UtilityConfig | None,
) -> FeedbackConfig | None:
    if not params.rubric_feedback:
        return None
    from tasks.llm.base import ConfigError

    if rubric is None:
        raise ConfigError("rubric_feedback: this recipe has no judge criteria to relate")
    if ifd is None and utility is None:
        raise ConfigError(
            "rubric_feedback needs a score to relate the judge to: turn on IFD "
            "(ifd_max / ifd_top_fraction) or utility (utility_dev)"
        )
    return FeedbackConfig(rubric=rubric, ifd=ifd, utility=utility)


def _ifd(params: CurationParams, fields: list[str]) -> IFDConfig | None:
    """IFD over the recipe's instruction and answer (its first two fields), if turned on."""
    if params.ifd_max is None and params.ifd_top_fraction is None:
        return None
    return IFDConfig(
        max_ifd=params.ifd_max if params.ifd_max is not None else 1.0,
        top_fraction=params.ifd_top_fraction,
        instruction_field=fields[0],
        answer_field=fields[1],
    )


def _utility(params: CurationParams, fields: list[str]) -> UtilityConfig | None:
    """Utility on the recipe's instruction and answer; the dev rows are read now, so a
    missing file stops the run before any request and their content is in the config."""
    if not params.utility_dev:
        return None
    from tasks.core.jsonl import InputError, numbered_rows
    from tasks.llm.base import ConfigError

    try:
        with open(params.utility_dev, encoding="utf-8") as stream:
            dev = load_dev([row for _, row in numbered_rows(stream)])
    except (OSError, InputError, ValueError) as exc:
        raise ConfigError(f"utility_dev {params.utility_dev}: {exc}") from None
    if not dev:
        raise ConfigError(f"utility_dev {params.utility_dev}: no rows")
    return UtilityConfig(
        dev=dev,
        top_fraction=params.utility_top_fraction,
        instruction_field=fields[0],
        answer_field=fields[1],
    )


def curate(run: Run, output: StageOutput, plan: CurationPlan) -> StageOutput:
    """Run the steps that are on, in order; returns the last one's output (``output``
    itself when all are off)."""
    current = output
    if plan.contamination:
        current = run.stage(contamination_stage(), current.kept, plan.contamination)
    if plan.near_dup:
        current = run.global_stage(minhash_dedup_stage(), current.kept, plan.near_dup)
    if plan.semantic:
        current = run.global_stage(semantic_dedup_stage(), current.kept, plan.semantic)
    if plan.ifd:
        current = run.stage(ifd_score_stage(), current.kept, plan.ifd)
        current = run.global_stage(ifd_select_stage(), current.kept, plan.ifd)
    if plan.utility:
        current = run.stage(utility_score_stage(), current.kept, plan.utility)
        current = run.global_stage(utility_select_stage(), current.kept, plan.utility)
    return current


def rubric_feedback_of(run: Run, judged: StageOutput, plan: CurationPlan) -> dict[str, Any] | None:
    """The rubric-feedback table of the run (``funnel.json``'s ``rubric_feedback``), or
    ``None`` when it is off. Call after :func:`curate`: the kept side is read from its
    scoring stages; the judge's rejections (``judged``: the judge stage's output) are
    scored now, off the funnel (:meth:`Run.side_stage`), and stay rejected."""
    config = plan.feedback
    if config is None:
        return None
    scored = run.side_stage(FEEDBACK_SCORE, judged.rejected, config)
    return rubric_feedback(scored.kept_rows(), _scored_kept(run), config.rubric)


def _scored_kept(run: Run) -> Iterator[dict[str, Any]]:
    """The rows curation scored, with every score each got: IFD's scored rows with the
    utility of those that reached it (utility is scored on the rows IFD kept), or
    utility's scored rows when IFD is off."""
    outputs = {o.stage: o for o in run.outputs}
    ifd, utility = outputs.get("ifd_score"), outputs.get("utility_score")
    if ifd is None:
        yield from utility.kept_rows() if utility is not None else ()
        return
    useful: dict[Any, Any] = {}
    if utility is not None:
        for row in utility.kept_rows():
            useful[row.get("id")] = (row.get("metadata") or {}).get("utility")
    for row in ifd.kept_rows():
        if row.get("id") in useful:
            row = dict(row, metadata={**(row.get("metadata") or {}), "utility": useful[row["id"]]})
        yield row
