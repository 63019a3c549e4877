"""Every recipe's run form in the Prefect UI: the fields in groups, the groups a person
changes first on top (inputs and outputs, models, generation, verification, curation,
runtime), a written title on each, the group named before its description, and where a
relative output lands; no "None" toggle (a field that defaults to None is a plain field,
left out when empty) and every provider a dropdown. Checked on the schema Prefect builds
the form from, for the flow of every recipe, and on the schema `winnow serve` registers;
the names and validation of the fields (the contract of ``--set``) do not change."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from flows.registry import RECIPES
from tasks.core.paths import SOURCE_ROOT, project_dir
from tasks.llm.base import ProviderKind
from tasks.pipeline.form import GROUPS, title_of
from winnow.serving.declared import load, to_runner_deployment

PROVIDERS = sorted(ProviderKind.__args__)


def _nulls(node: object, where: str = "") -> list[str]:
    """Every place in a schema that offers null: a null branch, a null type or default."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "null" or "null" in (node.get("type") or []):
            found.append(where)
        if "default" in node and node["default"] is None:
            found.append(f"{where} (default)")
        for key, value in node.items():
            found += _nulls(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _nulls(value, f"{where}/{i}")
    return found


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


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_no_none_toggles_and_every_provider_a_dropdown(name: str) -> None:
    """A field that defaults to None is a plain field without a default (the UI leaves
    it out when empty, and the model's None applies); a provider field is an enum."""
    props = _form(name)
    model = RECIPES[name].params_model()
    assert not _nulls(props), _nulls(props)
    optional = [f for f, field in model.model_fields.items() if field.default is None]
    assert optional, "the mixins' optional fields (base_url, preview...) are in every recipe"
    for field in optional:
        assert "default" not in props[field], field
        assert "anyOf" not in props[field] or len(props[field]["anyOf"]) > 1, field
    providers = [f for f in props if f.endswith("provider")]
    assert {"provider", "judge_provider"} <= set(providers)
    for field in providers:
        assert props[field]["type"] == "string" and sorted(props[field]["enum"]) == PROVIDERS
    # the form's typed values still validate; a left-out field is the model's None
    assert model.model_validate({"judge_provider": "openai"}).judge_provider == "openai"
    assert model.model_validate({}).judge_provider is None
    assert model.model_validate({"judge_provider": None}).judge_provider is None  # Python


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_served_form_starts_with_no_null(name: str) -> None:
    """What `winnow serve` registers: the flow's default object without its None fields
    (the form would start them as null and send them), and every deployment declared in
    prefect.yaml names ``params`` so `prefect deploy`'s form starts from each field's own
    default too; the schema's form is the model's, the same as above."""
    entry = load().get(name)
    assert "params" in entry.parameters, "prefect.yaml: give it `params: {}` at least"
    schema = to_runner_deployment(entry)._parameter_openapi_schema.model_dump()
    assert not _nulls(schema), _nulls(schema)
    default = schema["properties"]["params"]["default"]
    model = RECIPES[name].params_model()
    assert model.model_validate(default) == model()  # the Nones dropped, nothing else
    assert {f for f, v in model().model_dump().items() if v is not None} == set(default)


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
    # the judge falls back to the generator when its fields are left out of the form
    assert p.judge() == p.generator()
    assert RAGQAParams(judge_provider="openai").judge().kind == "openai"
    documents = _form("rag-qa")["documents"]
    assert documents["type"] == "string"
    assert str(SOURCE_ROOT / "examples" / "rag") in documents["description"]


def test_a_scaffolded_deployment_names_params_too(tmp_path) -> None:
    """`winnow new-recipe` appends its deployment with ``params: {}``, like the shipped
    ones, so its form also starts from the fields' own defaults."""
    from winnow.scaffold import Names, declare_deployment

    path = tmp_path / "prefect.yaml"
    path.write_text((SOURCE_ROOT / "infra" / "prefect.yaml").read_text())
    declare_deployment(Names.of("sql-queries"), path)
    assert load(path).get("sql-queries").parameters == {"params": {}}
