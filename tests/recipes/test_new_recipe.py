"""`winnow new-recipe`: names are checked, nothing is overwritten, and the skeleton it
writes into a copy of the project passes its own test and the recipe contract at once,
and `winnow run` knows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tasks.core.paths import SOURCE_ROOT
from winnow.cli import app
from winnow.scaffold import Names, Options, files_for

runner = CliRunner()


def fake_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "tasks").mkdir()
    return root


@pytest.mark.parametrize(
    "name", ["Bad_Name", "1st-recipe", "two--dashes", "trailing-", "class", "x" * 31, "a.b"]
)
def test_a_bad_name_is_refused_with_exit_2(name: str, tmp_path: Path) -> None:
    root = fake_project(tmp_path)
    result = runner.invoke(app, ["new-recipe", name, "--root", str(root)])
    assert result.exit_code == 2
    assert "bad recipe name" in result.output
    assert list(root.rglob("*.py")) == []


def test_nothing_is_overwritten(tmp_path: Path) -> None:
    root = fake_project(tmp_path)
    mine = root / "tests" / "recipes" / "test_unit_conversions_flow.py"
    mine.parent.mkdir(parents=True)
    mine.write_text("# mine\n")
    result = runner.invoke(app, ["new-recipe", "unit-conversions", "--root", str(root)])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert "tests/recipes/test_unit_conversions_flow.py" in result.output
    assert mine.read_text() == "# mine\n"
    assert not (root / "flows" / "unit_conversions.py").exists()  # all or nothing


def test_a_registered_name_or_a_tasks_module_is_refused(tmp_path: Path) -> None:
    root = fake_project(tmp_path)
    result = runner.invoke(app, ["new-recipe", "code-sft", "--root", str(root)])
    assert result.exit_code == 1 and "already exists" in result.output
    (root / "tasks" / "recipes").mkdir(parents=True, exist_ok=True)
    (root / "tasks" / "recipes" / "shared.py").write_text("")
    result = runner.invoke(app, ["new-recipe", "shared", "--root", str(root)])
    assert result.exit_code == 1 and "tasks/recipes/shared.py" in result.output


def test_the_names_derived_from_a_recipe_name() -> None:
    names = Names.of("sql-queries")
    # the title is the name as written: no "Sql queries"
    assert (names.module, names.cls, names.title) == ("sql_queries", "SqlQueries", "sql-queries")
    assert "flows/sql_queries.py" in files_for(names)
    assert "prompts/sql_queries/judge.toml" in files_for(names, Options(judge=True))
    assert "prompts/sql_queries/judge.toml" not in files_for(names, Options())


SHAPES = [
    Options(judge=judge, topics=topics, execute=execute)
    for judge in (False, True)
    for topics in (False, True)
    for execute in ("none", "python", "php")
]


@pytest.mark.parametrize("options", SHAPES, ids=lambda o: f"{o.judge}-{o.topics}-{o.execute}")
def test_every_shape_renders_to_valid_files(options: Options, tmp_path: Path) -> None:
    """Each combination of options gives Python that compiles, JSON that parses and TOML
    prompts that load; the flow runs dedup right after generate, then the optional stages
    in order."""
    import tomllib

    from winnow.scaffold import render

    names = Names.of("sql-queries")
    for rel, template in files_for(names, options).items():
        text = render(template, names, options)
        assert "${" not in text and "#%" not in text, rel
        if rel.endswith(".py"):
            compile(text, rel, "exec")
        elif rel.endswith(".json"):
            json.loads(text)
        elif rel.endswith(".toml"):
            assert "{{" in tomllib.loads(text)["messages"][-1]["content"]
    flow = render("flow.py.tmpl", names, options)
    order = [
        flow.index(f"run.{call}") for call in ("stage(GENERATE", "global_stage(", "stage(CHECK")
    ]
    assert order == sorted(order), "dedup must run right after generate"
    assert ("stage(EXECUTE" in flow) == (options.execute != "none")
    assert ("stage(JUDGE" in flow) == options.judge
    recipe = render("recipe.py.tmpl", names, options)
    assert ("topics_file" in recipe) == options.topics
    assert ("use_judge" in recipe) == options.judge
    assert "tasks.recipes" not in recipe.replace(
        "tasks.recipes.sql_queries", ""
    )  # no recipe imports another
    assert "tasks.dedup" not in flow


def copy_project(dest: Path) -> Path:
    """The source folders a recipe needs, and the test harness (not the whole suite)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("flows", "tasks", "winnow", "prompts", "expectations"):
        shutil.copytree(SOURCE_ROOT / folder, dest / folder, ignore=ignore)
    shutil.copy(SOURCE_ROOT / "pyproject.toml", dest)
    (dest / "infra").mkdir()
    shutil.copy(SOURCE_ROOT / "infra" / "prefect.yaml", dest / "infra")
    shutil.copytree(SOURCE_ROOT / "tests" / "plugins", dest / "tests" / "plugins", ignore=ignore)
    (dest / "tests" / "recipes").mkdir()
    for name in (
        "__init__.py",
        "conftest.py",
        "recipes/__init__.py",
        "recipes/test_recipe_contract.py",
    ):
        shutil.copy(SOURCE_ROOT / "tests" / name, dest / "tests" / name)
    return dest


def in_copy(
    root: Path, *argv: str, timeout: float, **more: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "WINNOW_"))}
    env.update(more)
    return subprocess.run(
        [sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_skeleton_passes_its_own_test_at_once(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "copy")
    result = runner.invoke(app, ["new-recipe", "unit-conversions", "--root", str(root)])
    assert result.exit_code == 0, result.output
    for rel in files_for(Names.of("unit-conversions")):
        assert (root / rel).is_file(), rel
        assert rel in result.output
    assert not (SOURCE_ROOT / "flows" / "unit_conversions.py").exists()
    # declared as a deployment too, after the shipped ones, comments kept
    text = (root / "infra" / "prefect.yaml").read_text()
    assert text.startswith((SOURCE_ROOT / "infra" / "prefect.yaml").read_text().rstrip("\n"))
    entries = {d["name"]: d for d in yaml.safe_load(text)["deployments"]}
    assert entries["unit-conversions"]["entrypoint"] == (
        "flows/unit_conversions.py:unit_conversions"
    )

    lint = in_copy(root, "-m", "ruff", "check", "--no-cache", "flows", "tasks", timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    tests = in_copy(
        root, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/recipes/test_unit_conversions_flow.py", "tests/recipes/test_recipe_contract.py",
        "-k", "unit_conversions or unit-conversions",
        timeout=800,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    # its own flow test, and the contract's three checks on the new recipe
    assert "4 passed" in tests.stdout, tests.stdout[-2000:]

    listed = in_copy(root, "-m", "winnow.cli", "run", "unit-conversions", "--params", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "n_examples" in listed.stdout and "min_words" in listed.stdout
    unknown = in_copy(root, "-m", "winnow.cli", "run", "no-such-recipe", timeout=120)
    assert unknown.returncode == 2 and "unit-conversions" in unknown.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_recipe_with_every_option_runs_scripted_at_once(tmp_path: Path) -> None:
    """`new-recipe --judge --topics --execute python` in a copy of the project, then
    `winnow run NAME --scripted` there: generate, dedup, check, the sandbox and the judge
    run against the test LLM server and the funnel is the scenario's; its own flow test
    and the recipe contract pass too."""
    root = copy_project(tmp_path / "copy")
    args = ["new-recipe", "sql-queries", "--judge", "--topics", "--execute", "python"]
    result = runner.invoke(app, [*args, "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "topics → prompt and response → dedup → check → python run" in result.output
    assert (root / "prompts" / "sql_queries" / "judge.toml").is_file()

    lint = in_copy(root, "-m", "ruff", "check", "--no-cache", "flows", "tasks", "winnow",
                   timeout=120)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr

    run = in_copy(
        root, "-m", "winnow.cli", "run", "sql-queries", "--scripted",
        timeout=600, WINNOW_PREFECT_SERVER="per-run",  # no background server left behind
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "scripted: the funnel is the scenario's (5 stages, 1 kept)" in run.stdout
    work = next((root / ".winnow" / "scripted").glob("sql-queries-*"))
    kept = [json.loads(x) for x in (work / "out" / "dataset.jsonl").read_text().splitlines()]
    assert len(kept) == 1 and "```python\ndef add_one" in kept[0]["messages"][1]["content"]
    assert kept[0]["metadata"]["judge"]["verdict"] == "keep"
    rejected = (work / "out" / "rejected.jsonl").read_text()
    assert '"stage": "execute"' in rejected and '"stage": "judge"' in rejected

    tests = in_copy(
        root, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/recipes/test_sql_queries_flow.py", "tests/recipes/test_recipe_contract.py",
        "-k", "sql_queries or sql-queries",
        timeout=800,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
