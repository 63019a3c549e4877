"""What a published dataset says about the run that made it: the facts its report
(``report.html``) and its dataset card (``README.md``) are written from.

``Run.facts`` gathers them from the run and its catalog rows when it publishes, so both
files tell the same story as ``funnel.json`` and ``winnow show``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tasks.pipeline.params import CardParams

# Parameters about where a run ran, not how its data was made: left out of the card.
INFRASTRUCTURE = frozenset(
    {
        "out",
        "storage",
        "base_url",
        "judge_base_url",
        "dask_address",
        "ray_address",
        "api_key_secret",
        "judge_api_key_secret",
    }
)


class RunFacts(BaseModel):
    run_id: str
    recipe: str
    params: dict[str, Any] = Field(default_factory=dict)
    card: CardParams = Field(default_factory=CardParams)
    started_at: datetime | None = None
    published_at: datetime
    funnel: dict[str, Any]  # the funnel document (funnel.json)
    usage: list[dict[str, Any]] = Field(default_factory=list)  # Catalog.llm_usage
    validations: list[dict[str, Any]] = Field(default_factory=list)  # Catalog.validations

    @property
    def n_inputs(self) -> int:
        stages = self.funnel.get("stages") or []
        return int(stages[0]["n_in"]) if stages else 0

    @property
    def kept(self) -> int:
        return int(self.funnel.get("kept") or 0)

    def made_with(self) -> dict[str, Any]:
        """The run's parameters that shaped its data (infrastructure left out)."""
        return {k: v for k, v in self.params.items() if k not in INFRASTRUCTURE}

    def models(self) -> list[str]:
        """Each provider/model that answered, in the order first used."""
        seen: dict[str, None] = {}
        for u in self.usage:
            seen.setdefault(f"{u.get('provider')}/{u.get('model')}", None)
        return list(seen)

    def stage_costs(self) -> dict[str, dict[str, Any]]:
        """Calls, tokens, cost and mean latency by stage."""
        out: dict[str, dict[str, Any]] = {}
        for u in self.usage:
            s = out.setdefault(
                u["stage"],
                {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                 "latency_sum": 0.0, "latency_n": 0},
            )  # fmt: skip
            for k in ("calls", "prompt_tokens", "completion_tokens", "cost_usd"):
                s[k] += u.get(k) or 0
            if u.get("mean_latency_s") is not None:
                live = (u.get("calls") or 0) - (u.get("cached_calls") or 0)
                s["latency_sum"] += u["mean_latency_s"] * live
                s["latency_n"] += live
        for s in out.values():
            n = s.pop("latency_n")
            total = s.pop("latency_sum")
            s["mean_latency_s"] = total / n if n else None
        return out
