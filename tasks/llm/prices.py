"""Prices of LLM requests: USD per 1M input and output tokens, per model.

The built-in table (``prices.json`` next to this module) lists common OpenAI and
Anthropic models. A user file named by ``WINNOW_PRICES`` (same shape, or just a
``{"model": {"input": .., "output": ..}}`` mapping) overrides or extends it — also the
place to give a self-hosted model a price. The local embedded model always costs 0; an
unknown remote model costs 0 with one warning. Batch APIs are priced at
``batch_discount`` (0.5 = half price) via ``cost(..., batch=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.llm.base import ConfigError, Usage

log = logging.getLogger(__name__)

BUILTIN_PRICES = Path(__file__).with_name("prices.json")
PRICES_ENV = "WINNOW_PRICES"


class ModelPrice(BaseModel):
    input: float = Field(ge=0)  # USD per 1M prompt tokens
    output: float = Field(ge=0)  # USD per 1M completion tokens


class PriceTable:
    def __init__(self, models: dict[str, ModelPrice], batch_discount: float = 0.5) -> None:
        if not 0 <= batch_discount <= 1:
            raise ConfigError(f"batch_discount must be within [0, 1], got {batch_discount}")
        self.models = dict(models)
        self.batch_discount = batch_discount
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, user_file: Path | str | None = None) -> PriceTable:
        """The built-in table, overlaid with ``user_file`` or else ``$WINNOW_PRICES``."""
        models, discount = _parse(json.loads(BUILTIN_PRICES.read_text()), BUILTIN_PRICES)
        path = user_file or os.environ.get(PRICES_ENV)
        if path:
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot read the price file {path} ({PRICES_ENV}): {exc}"
                ) from exc
            user_models, user_discount = _parse(data, Path(path))
            models.update(user_models)
            if "batch_discount" in data:
                discount = user_discount
        return cls(models, discount)

    def price(self, model: str) -> ModelPrice | None:
        """Exact name, else the longest listed prefix ending at a ``-`` (dated snapshots)."""
        if model in self.models:
            return self.models[model]
        best = ""
        for name in self.models:
            if model.startswith(name + "-") and len(name) > len(best):
                best = name
        return self.models[best] if best else None

    def cost(self, provider: str, model: str, usage: Usage, *, batch: bool = False) -> float:
        """USD for one request. ``batch=True`` applies the batch-API discount."""
        if provider == "local":
            return 0.0
        price = self.price(model)
        if price is None:
            with self._lock:
                if model not in self._warned:
                    self._warned.add(model)
                    log.warning(
                        "no price for model %r (%s): counting its cost as 0; set one in the "
                        "JSON file named by %s",
                        model,
                        provider,
                        PRICES_ENV,
                    )
            return 0.0
        usd = (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6
        return usd * self.batch_discount if batch else usd


def _parse(data: Any, path: Path) -> tuple[dict[str, ModelPrice], float]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    raw = data.get("models", None)
    if raw is None:  # a flat {"model": {...}} mapping
        raw = {k: v for k, v in data.items() if isinstance(v, dict)}
    try:
        models = {name: ModelPrice.model_validate(p) for name, p in raw.items()}
    except Exception as exc:
        raise ConfigError(f"{path}: bad price entry: {exc}") from exc
    return models, float(data.get("batch_discount", 0.5))
