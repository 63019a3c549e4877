"""Self-improvement rounds: each round's best model generates the next round's data.

A recipe's parameters mix in :class:`RoundParams` to carry the round and the model of
each round; the flow passes ``round_=params.round`` to ``Run`` (which stamps every
provenance record and the catalog row) and generates with ``params.provider_for_round``.
``winnow rounds RECIPE`` then compares the rounds' funnels and, where the runs made one
(``rubric_feedback=true``), their rubric feedback criterion by criterion.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.llm.base import ProviderSpec


class RoundParams(BaseModel):
    round: int = Field(0, ge=0, description="self-improvement round of this run")
    round_models: dict[int, ProviderSpec] = Field(
        default_factory=dict, description="round → the model that generates in that round"
    )

    def provider_for_round(self, default: ProviderSpec) -> ProviderSpec:
        """The generator of this round: ``round_models[round]``, else ``default``."""
        return self.round_models.get(self.round, default)

    def round_model_name(self, default: ProviderSpec) -> str:
        spec = self.provider_for_round(default)
        return f"{spec.kind}/{spec.model or 'default'}"


def feedback_by_criterion(feedback: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """One run's rubric feedback (``funnel.json``'s ``rubric_feedback``) as the figures a
    round carries per criterion (and ``(judge)`` for the judge as a whole): rejected,
    would teach, kept, teach nothing, and the mean IFD and utility of each side, so
    rounds can be read side by side after a rubric change."""
    if not feedback:
        return {}
    entries = [(c["criterion"], c) for c in feedback.get("criteria") or []]
    entries.append(("(judge)", feedback.get("judge") or {}))
    out = {}
    for name, entry in entries:
        rej, kept = entry.get("rejected") or {}, entry.get("kept") or {}
        out[name] = {
            "rejected": rej.get("n", 0),
            "would_teach": rej.get("would_teach", 0),
            "kept": kept.get("n", 0),
            "teach_nothing": kept.get("teach_nothing", 0),
            **{
                f"{side}_{score}_mean": (part.get(score) or {}).get("mean")
                for side, part in (("rejected", rej), ("kept", kept))
                for score in ("ifd", "utility")
            },
        }
    return out


def feedback_cell(figures: dict[str, Any] | None) -> str:
    """A round's cell for one criterion: ``rejected 3 (2 would teach) · kept 5 (1 teach
    nothing)``; ``–`` when the round has no figures for it."""
    if not figures:
        return "–"
    return (
        f"rejected {figures['rejected']} ({figures['would_teach']} would teach) · "
        f"kept {figures['kept']} ({figures['teach_nothing']} teach nothing)"
    )
