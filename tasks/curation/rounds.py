"""Self-improvement rounds: each round's best model generates the next round's data.

A recipe's parameters mix in :class:`RoundParams` to carry the round and the model of
each round; the flow passes ``round_=params.round`` to ``Run`` (which stamps every
provenance record and the catalog row) and generates with ``params.provider_for_round``.
``winnow rounds RECIPE`` then compares the rounds' funnels.
"""

from __future__ import annotations

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
