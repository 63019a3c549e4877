"""The recipes Winnow ships: name → flow and parameters model.

A recipe module in ``flows/`` defines one Prefect flow whose single argument is a
pydantic parameters model; registering it here makes it runnable as
``winnow run NAME`` and servable as a deployment.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Recipe:
    name: str
    module: str
    flow_attr: str
    params_path: str  # "module:Class"
    summary: str

    def flow(self) -> Any:
        return getattr(importlib.import_module(self.module), self.flow_attr)

    def params_model(self) -> type[BaseModel]:
        module, _, attr = self.params_path.partition(":")
        return getattr(importlib.import_module(module), attr)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "code-sft",
            "flows.code_sft",
            "code_sft",
            "tasks.code.sft:CodeSFTParams",
            "problems → solutions with tests → lint → sandbox → revision → judge",
        ),
        Recipe(
            "rag-qa",
            "flows.rag_qa",
            "rag_qa",
            "tasks.rag.recipe:RAGQAParams",
            "contexts → questions by kind → answers → context adherence → filter",
        ),
        Recipe(
            "php-translation",
            "flows.php_translation",
            "php_translation",
            "tasks.code.php_translation:PHPTranslationParams",
            "verified Python → PHP → php -l → sandbox → revision → coverage → faithfulness",
        ),
    ]
}


class UnknownRecipe(ValueError):
    pass


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownRecipe(
            f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}"
        ) from None
