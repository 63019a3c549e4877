"""`winnow run NAME --scripted`: a recipe run end to end against its own test scenario
(``winnow/testing/scenarios/<recipe>.py``), answered by the project's test LLM server, a
test double started in this process, not a model. The way to try a recipe by hand while
writing it: every stage, gate, rejection and the publishing run for real, in seconds and
for free, and the funnel is compared with the one the scenario expects."""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from winnow.testing.scenarios import Scenario


@dataclass
class ScriptedRun:
    scenario: Scenario
    base_url: str
    work: Path
    params: dict[str, Any]

    def verdict(self, summary: dict[str, Any]) -> tuple[bool, str]:
        """Whether the run's funnel and kept count are the scenario's, and a line saying so."""
        got = {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in summary["stages"]}
        want = self.scenario.funnel
        differ = [
            f"{stage}: expected {expected}, got {got.get(stage)}"
            for stage, expected in want.items()
            if got.get(stage) != expected
        ]
        if summary.get("kept") != self.scenario.kept:
            differ.append(f"kept: expected {self.scenario.kept}, got {summary.get('kept')}")
        if differ:
            return False, "the funnel differs from the scenario's: " + "; ".join(differ)
        return True, f"the funnel is the scenario's ({len(want)} stages, {self.scenario.kept} kept)"


def start(recipe: str, root: Path) -> ScriptedRun:
    """Start the test LLM server with ``recipe``'s script (it stops when this process
    exits) and return the scenario's parameters, with a fresh work directory under
    ``root``."""
    from winnow.testing.llm_server import LLMTestServer
    from winnow.testing.scenarios import scenario_for

    scenario = scenario_for(recipe)
    server = LLMTestServer(scenario.script()).start()
    atexit.register(server.stop)
    work = root / "scripted" / f"{recipe}-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    work.mkdir(parents=True, exist_ok=True)
    return ScriptedRun(scenario, server.base_url, work, scenario.params(work, server.base_url))
