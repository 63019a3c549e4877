"""`winnow new-recipe`: names are checked, nothing is overwritten, and the skeleton it
writes into a copy of the project passes its own test and the recipe contract at once,
and `winnow run` knows it."""

from __future__ import annotations

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
from winnow.scaffold import Names, files_for

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
    names = Names.of("unit-conversions")
    assert (names.module, names.cls, names.title) == (
        "unit_conversions",
        "UnitConversions",
        "Unit conversions",
    )
    assert "flows/unit_conversions.py" in files_for(names)


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


def in_copy(root: Path, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "WINNOW_"))}
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
