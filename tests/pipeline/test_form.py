"""Every recipe's run form in the Prefect UI: the fields in groups, the groups a person
changes first on top (inputs and outputs, models, generation, verification, curation,
runtime), a written title on each, the group named before its description, and where a
relative output lands. Checked on the schema Prefect builds the form from, for the flow
of every recipe; the names and validation of the fields (the contract of ``--set``) do
not change."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from flows.registry import RECIPES
from tasks.core.paths import project_dir
from tasks.pipeline.form import GROUPS, title_of


def _form(name: str) -> dict:
    recipe = RECIPES[name]
    schema = parameter_schema(recipe.flow().fn).model_dump()
    return schema["definitions"][recipe.params_model().__name__]["properties"]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_form_is_in_groups_with_titles(name: str) -> None:
    props = _form(name)
    model = RECIPES[name].params_model()
    assert set(props) == set(model.model_fields)  # no field renamed, none lost
    groups = [p["description"].split(":")[0] for p in props.values()]
    assert all(g in GROUPS for g in groups), groups
    ranks = [GROUPS.index(g) for g in groups]
    assert ranks == sorted(ranks)  # grouped, in the groups' order
    assert groups[0] == "Inputs and outputs" and groups[-1] == "Runtime"
    assert [p["position"] for p in props.values()] == list(range(len(props)))
    for field, prop in props.items():
        assert prop["title"] == title_of(field)
        assert "_" not in prop["title"] and prop["title"][0].isupper(), prop["title"]
    first = list(props)[: list(groups).count("Inputs and outputs") + 2]
    assert "out" in first and "provider" in first
    assert f"a relative path is under {project_dir()}" in props["out"]["description"]
    assert props["provider"]["title"] == "Provider" and props["base_url"]["title"] == "Base URL"
    assert props["llm_timeout_s"]["title"] == "LLM request timeout (s)"


def test_titles_are_written_not_generated() -> None:
    assert title_of("n_synthetic") == "Synthetic passages"
    assert title_of("n_solutions") == "Solutions"
    assert title_of("batch_poll_s") == "Batch: first poll wait (s)"
    assert title_of("solution_max_tokens") == "Solution max tokens"
    assert title_of("some_delay_s") == "Some delay (s)"


def test_the_values_a_form_sends_still_validate() -> None:
    from tasks.recipes.rag_qa.recipe import RAGQAParams

    p = RAGQAParams(out="x", judges=1, provider="openai-compatible", base_url="http://h")
    assert p.out == "x" and p.judges == 1 and p.documents is None
