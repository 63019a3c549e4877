"""The contract every recipe in the registry keeps, checked on each in turn:

- its flow takes one pydantic parameters model, with a default and a description on
  every field (the Prefect UI form and ``winnow run --params`` are built from it);
- every suite its gates name exists in ``expectations/`` and parses;
- a run against the scripted test LLM server (its scenario in
  ``winnow/testing/scenarios/``) completes, and ``funnel.json``, ``rejected.jsonl`` and
  the catalog account for every input: each stage's in = kept + rejected, every
  rejection has a stage and a reason. (``generate`` publishes one JSON Lines file, every
  input row in order with its completion or its error, instead of a dataset folder.)
- its report.html (beside ``generate``'s file) shows the funnel's numbers, and its dataset
  card makes ``datasets.load_dataset(out)`` load the kept examples with no argument.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from flows.registry import RECIPES, discover, get_recipe
from tasks.gates.gx import check_suites
from tasks.gates.suites import list_suites
from winnow.testing.llm_server import LLMTestServer
from winnow.testing.scenarios import scenario_for

NAMES = sorted(RECIPES)
SUITE_NAME = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


def gate_suites(module_name: str) -> list[str]:
    """Suite names passed as literals to any ``...gate(...)`` call in the flow module, or
    in the ``(stage, config, "suite")`` links of a ``run.chain(...)``."""
    source = inspect.getsource(importlib.import_module(module_name))
    names = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called.endswith("gate") or called == "chain":
            args = [e for a in node.args for e in (a.elts if isinstance(a, ast.Tuple) else [a])]
            names += [
                a.value
                for a in args
                if isinstance(a, ast.Constant)
                and isinstance(a.value, str)
                and SUITE_NAME.match(a.value)
            ]
    return names


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_registry_has_the_four_shipped_recipes() -> None:
    assert {"code-sft", "rag-qa", "php-translation", "math-word-problems"} <= set(RECIPES)
    # a declared recipe is the same object whether read from source or imported
    for name, declared in discover().items():
        module = importlib.import_module(declared.module)
        assert module.RECIPE == declared == get_recipe(name)


@pytest.mark.parametrize("name", NAMES)
def test_the_flow_takes_one_documented_parameters_model(name: str) -> None:
    recipe = get_recipe(name)
    model = recipe.params_model()
    fn = recipe.flow().fn
    (param,) = inspect.signature(fn).parameters.values()
    assert typing.get_type_hints(fn)[param.name] is model
    assert issubclass(model, BaseModel) and isinstance(param.default, model)
    undocumented = [n for n, f in model.model_fields.items() if not f.description]
    required = [n for n, f in model.model_fields.items() if f.is_required()]
    assert undocumented == [] and required == []
    assert model().model_dump() == param.default.model_dump()


@pytest.mark.parametrize("name", NAMES)
def test_every_suite_its_gates_name_exists_and_parses(name: str) -> None:
    suites = gate_suites(get_recipe(name).module)
    assert suites, f"{name} gates nothing"
    specs = check_suites(suites, deep=True)
    assert [s.name for s in specs] == suites


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_scripted_run_accounts_for_every_input(name: str, tmp_path, prefect_harness) -> None:
    from tasks.store.catalog import Catalog

    recipe = get_recipe(name)
    scenario = scenario_for(name)
    with LLMTestServer(scenario.script()) as server:
        params = recipe.params_model()(**scenario.params(tmp_path, server.base_url))
        summary = recipe.flow()(params)
    out = Path(params.out)
    if out.is_file():  # generate: one file, every row in input order
        funnel = summary
        rows = read_jsonl(out)
        kept = [r for r in rows if "completion" in r]
        rejected = [r for r in rows if "error" in r]
        assert len(kept) + len(rejected) == len(rows) == funnel["stages"][0]["n_in"]
        assert all(r["error"] and r["provenance"] for r in rejected)
    else:
        funnel = json.loads((out / "funnel.json").read_text())
        kept = read_jsonl(out / "dataset.jsonl")
        rejected = read_jsonl(out / "rejected.jsonl")
        assert all(r["id"] and r["stage"] and r["reason"] for r in rejected)
        assert all(set(r["messages"][-1]) == {"role", "content"} for r in kept)
    counts = {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]}
    assert counts == scenario.funnel
    for n_in, n_out, n_rejected in counts.values():
        assert n_in == n_out + n_rejected
    assert len(kept) == funnel["kept"] == summary["kept"] == scenario.kept
    assert funnel["stages"][-1]["n_out"] == len(kept)
    assert len(rejected) == sum(s["n_rejected"] for s in funnel["stages"])

    catalog = Catalog()
    assert all(row["n_unaccounted"] == 0 for row in catalog.funnel(summary["run_id"]))
    recorded = catalog.query(
        "SELECT stage, reason FROM rejections WHERE run_id = ?", [summary["run_id"]]
    )
    assert len(recorded) == len(rejected)
    assert all(r["stage"] and r["reason"] for r in recorded)

    ran = [g["suite"] for g in funnel["gates"]]
    assert ran and all(g["success"] for g in funnel["gates"])
    assert set(ran) <= set(list_suites())

    # What a person and the Hub see of it: report.html (the funnel's numbers) beside the
    # output, and for a dataset folder a card that `datasets` loads with no argument.
    report = out.with_suffix(".report.html") if out.is_file() else out / "report.html"
    page = report.read_text()
    for s in funnel["stages"]:
        assert f'data-stage="{s["stage"]}" data-in="{s["n_in"]}" data-out="{s["n_out"]}"' in page
    if out.is_dir():
        import datasets

        loaded = datasets.load_dataset(str(out))["train"]
        assert [r["messages"] for r in loaded] == [r["messages"] for r in kept]
        if rejected:
            assert len(datasets.load_dataset(str(out), "rejected")["train"]) == len(rejected)
        card = (out / "README.md").read_text()
        usage = catalog.llm_usage(summary["run_id"])  # which model answered which prompt
        assert sum(u["calls"] for u in usage) == funnel["llm_calls"]
        for u in usage:
            row = f"| {u['stage']} | {u['provider']} | {u['model']} | {u['template']} |"
            assert f"{row} {u['template_version']} | {u['calls']} |" in card
