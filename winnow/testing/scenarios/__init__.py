"""Scripted runs of every recipe against the test LLM server (a test double, not a model).

One module here per recipe, each defining ``SCENARIO``: the server's script, the
parameters of a small run, and the funnel that run must produce. The recipe contract test
runs every recipe through its scenario; a recipe's own flow test may reuse it.
``winnow new-recipe`` writes one for the recipe it creates.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import Script

Funnel = dict[str, tuple[int, int, int]]  # stage -> (in, out, rejected)


@dataclass(frozen=True)
class Scenario:
    recipe: str
    script: Callable[[], Script]
    # (a fresh work directory, the server's base URL) -> parameter values of a small run
    params: Callable[[Path, str], dict[str, Any]]
    funnel: Funnel
    kept: int


class NoScenario(LookupError):
    pass


def scenarios() -> dict[str, Scenario]:
    """Every scenario in this package, by recipe name."""
    found: dict[str, Scenario] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if isinstance(scenario, Scenario):
            found[scenario.recipe] = scenario
    return found


def scenario_for(recipe: str) -> Scenario:
    found = scenarios()
    if recipe not in found:
        raise NoScenario(
            f"recipe {recipe!r} has no test scenario: add winnow/testing/scenarios/"
            f"{recipe.replace('-', '_')}.py defining SCENARIO"
        )
    return found[recipe]
