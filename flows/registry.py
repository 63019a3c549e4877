"""The recipes: name → flow and parameters model.

A recipe module in ``flows/`` defines one Prefect flow whose single argument is a
pydantic parameters model, and declares itself at module level::

    RECIPE = Recipe(name="my-recipe", module=__name__, flow_attr="my_recipe",
                    params_path="tasks.recipes.my_recipe.recipe:MyRecipeParams",
                    summary="...")

which makes it runnable as ``winnow run NAME`` and servable as a deployment. The flow
names itself and its run with ``RECIPE.name``: the name is said once.

The declarations are read from the source (``ast``), not imported: importing a flow
module costs Prefect's import, and listing recipes must stay cheap.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path
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


def _declared(path: Path) -> Recipe | None:
    """The ``RECIPE = Recipe(...)`` declared in a flow module's source, or None. Its
    arguments must be literals (``module`` may be ``__name__``)."""
    module = f"flows.{path.stem}"
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if not (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["RECIPE"]
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "Recipe"
        ):
            continue

        def value(arg: ast.expr) -> str:
            if isinstance(arg, ast.Name) and arg.id == "__name__":
                return module
            return ast.literal_eval(arg)

        call = node.value
        return Recipe(
            *[value(a) for a in call.args], **{k.arg: value(k.value) for k in call.keywords}
        )  # type: ignore[misc]
    return None


def discover(directory: Path | None = None) -> dict[str, Recipe]:
    """Recipes declared with ``RECIPE = Recipe(...)`` in ``flows/*.py``."""
    found: dict[str, Recipe] = {}
    for path in sorted((directory or Path(__file__).parent).glob("*.py")):
        if path.stem.startswith("_") or path.stem == "registry":
            continue
        recipe = _declared(path)
        if recipe is not None:
            found[recipe.name] = recipe
    return found


RECIPES: dict[str, Recipe] = discover()


class UnknownRecipe(ValueError):
    pass


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownRecipe(
            f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}"
        ) from None
