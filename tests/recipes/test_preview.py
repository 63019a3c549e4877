"""`--preview`: a few inputs through every stage of a real recipe against the scripted test
LLM server (a test double), nothing published, and a projection of the full run that the
full run then keeps: its requests, its cost at list price and what it kept fall within
the stated bands. The preview and the run's live progress are Prefect artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.registry import RECIPES
from tasks.recipes.math_word_problems.recipe import MathParams
from winnow.cli import app
from winnow.testing.llm_server import LLMTestServer, Quota
from winnow.testing.scenarios import generate as generate_scenario
from winnow.testing.scenarios.math_word_problems import SCENARIO

PRICE_IN, PRICE_OUT = 3.0, 15.0  # USD per 1M tokens, given to the test model


def within(value: float, band: dict) -> bool:
    return band["low"] - 1e-9 <= value <= band["high"] + 1e-9


def artifacts(*keys: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys)))
        )


@pytest.mark.slow
def test_preview_projects_what_the_full_run_then_does(
    tmp_path: Path, prefect_harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.math_word_problems import math_word_problems

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"test-model": {"input": PRICE_IN, "output": PRICE_OUT}}))
    monkeypatch.setenv("WINNOW_PRICES", str(prices))
    with LLMTestServer(SCENARIO.script()) as server:
        given = SCENARIO.params(tmp_path, server.base_url)
        doc = math_word_problems(MathParams(**given, preview=4))
        assert not Path(given["out"]).exists()  # a preview publishes nothing

        # what it shows: examples with reasons, the funnel, the projection
        assert doc["preview"] is True and doc["preview_rows"] == 4 and doc["full_rows"] == 9
        kept = doc["examples"]["kept"]
        assert [r["metadata"]["topic"] for r in kept] == ["alpha"]
        reasons = {(r["stage"], r["reason"].split(":")[0]) for r in doc["examples"]["rejected"]}
        assert ("problems", "malformed model answer") in reasons
        assert ("execute", "program crashed") in reasons
        assert [s["stage"] for s in doc["stages"]][:2] == ["problems", "unique_problems"]
        projection = doc["projection"]
        for name in ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "wall_s"):
            band = projection[name]
            assert band["low"] <= band["estimate"] <= band["high"], name
        (model,) = projection["by_model"]
        assert model["model"] == "test-model" and model["price_in_per_m"] == PRICE_IN
        assert projection["cost_usd"]["estimate"] > 0
        assert projection["already_answered"] == doc["llm_calls"] == 7  # delta asked 3 times
        assert any("cannot tell a 5% yield" in n for n in projection["notes"])

        # the same projection on the run's page, and the live progress, finished
        (shown,) = [a for a in artifacts("math-word-problems-preview")
                    if a.description == doc["run_id"]]  # fmt: skip
        assert "projected" in shown.data and "What this preview cannot know" in shown.data
        (live,) = [a for a in artifacts("math-word-problems-progress")
                   if doc["run_id"] in (a.description or "")]  # fmt: skip
        assert live.data == 100.0 and "kept so far: 1" in live.description
        assert "| judge | 1/1 |" in live.description

        full = math_word_problems(MathParams(**given))

    # the full run against the stated bands
    assert within(full["llm_calls"], projection["requests"]), (full, projection["requests"])
    list_price = (
        full["tokens"]["prompt"] * PRICE_IN + full["tokens"]["completion"] * PRICE_OUT
    ) / 1e6  # what it would have paid with nothing journaled
    assert within(list_price, projection["cost_usd"]), (list_price, projection["cost_usd"])
    assert within(full["kept"], projection["kept"])
    # and the preview's answers were not paid twice: the journal gave them back
    assert full["llm_calls_from_journal"] >= projection["already_answered"]
    assert full["cost_usd"] < list_price


def test_a_number_without_preview_is_refused() -> None:
    result = CliRunner().invoke(app, ["run", "generate", "5"])
    assert result.exit_code == 2
    assert "--preview's N" in result.output


def test_every_recipe_takes_a_preview_parameter() -> None:
    """The UI's form is made from the parameters model: a deployment run can preview."""
    for name, recipe in RECIPES.items():
        field = recipe.params_model().model_fields["preview"]
        assert field.default is None and "project the full run" in field.description, name


@pytest.mark.slow
def test_cli_preview_json_is_a_projection_on_stdout(tmp_path: Path) -> None:
    script = generate_scenario.script()
    script.quota = Quota(requests_per_minute=600)  # reported in x-ratelimit-* headers
    script.latency_ms = 100
    with LLMTestServer(script) as server:
        given = generate_scenario.params(tmp_path, server.base_url)
        args = ["run", "generate", "--preview", "--json", "--provider", "openai-compatible"]
        args += ["--model", "test-model", "--base-url", server.base_url, "--out", given["out"]]
        args += ["--set", f"input={given['input']}", "--set", "max_retries=1"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds the JSON alone; progress went to stderr
    assert doc["preview_rows"] == 3 and doc["full_rows"] == 4  # --preview alone: 3 inputs
    projection = doc["projection"]
    for name in ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "wall_s"):
        assert set(projection[name]) == {"estimate", "low", "high"}
    # 3 rows asked (one failing for good: retried) of 4: the 4th asks once more
    assert projection["requests"]["estimate"] == pytest.approx(4.0)
    # 600 a minute is one request per 0.1 s: the quota, not the latency at a concurrency
    # of 16, sets the pace the projection states
    assert projection["wall_s"]["estimate"] == pytest.approx(4 * 60 / 600, rel=0.01)
    assert not Path(given["out"]).exists()  # nothing published


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_previews_and_its_full_run_falls_in_the_band(
    name: str, tmp_path: Path, prefect_harness
) -> None:
    """Each recipe through its scripted scenario: a 2-input preview publishes nothing and
    projects the full run's requests; the full run's requests fall within the band (an
    open high bound, for a stage no preview row reached, bounds nothing)."""
    from flows.registry import get_recipe
    from winnow.testing.scenarios import scenario_for

    recipe, scenario = get_recipe(name), scenario_for(name)
    with LLMTestServer(scenario.script()) as server:
        given = scenario.params(tmp_path, server.base_url)
        doc = recipe.flow()(recipe.params_model()(**given, preview=2))
        assert not Path(given["out"]).exists(), "a preview published"
        full = recipe.flow()(recipe.params_model()(**given))
    inputs = scenario.funnel[next(iter(scenario.funnel))][0]  # the first stage's rows in
    assert doc["preview"] and doc["full_rows"] == inputs
    assert doc["preview_rows"] == min(2, inputs)  # rag-qa's scenario has a single passage
    band = doc["projection"]["requests"]
    high = band["high"] if band["high"] is not None else float("inf")
    assert band["low"] - 1e-9 <= full["llm_calls"] <= high + 1e-9, (full["llm_calls"], band)
    assert full["kept"] == scenario.kept  # the preview changed nothing the full run keeps
