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


def served_by(base_url: str, work: Path) -> dict[str, Any]:
    """The parameters every scenario shares: the test server as an OpenAI-compatible
    provider, and an output directory in the work directory."""
    return {
        "out": str(work / "out"),
        "provider": "openai-compatible",
        "model": "test-model",
        "base_url": base_url,
    }


def topics_file(work: Path, topics: list[str]) -> str:
    """A topics file (one a line) in the work directory; returns its path."""
    path = work / "topics.txt"
    path.write_text("\n".join(topics) + "\n")
    return str(path)


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
