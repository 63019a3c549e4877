"""Writing a new recipe's skeleton: flow, stages, parameters, prompts, suites, test
scenario and test, from the templates in ``winnow/templates/recipe/``, and its deployment
in ``infra/prefect.yaml``.

The skeleton is a working recipe (topics → LLM JSON → exact dedup → a check → publish)
whose test passes at once against the scripted test LLM server. Options add the common
shapes from the shared building blocks: a judge stage (``judge``), topics read from a
file (``topics``), generated code run against its tests in the sandbox (``execute``). A
data engineer then replaces the check with the recipe's real verification (see
docs/recipes.md).

The templates are Jinja with ``${...}`` for values and ``#%`` line statements for the
options, so that the ``{{ }}`` of the prompt templates they contain pass through. Jinja
swallows the blank lines after a line statement; a line holding ``${''}`` keeps one.
"""

from __future__ import annotations

import keyword
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2

TEMPLATES = Path(__file__).parent / "templates" / "recipe"
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 30


class ScaffoldError(ValueError):
    """The name is unusable, or a file the skeleton needs already exists."""


@dataclass(frozen=True)
class Names:
    name: str  # kebab-case: the recipe's and the flow's name
    module: str  # snake_case: module, package, prompt folder and suite prefix
    cls: str  # CamelCase: the parameters model's prefix
    title: str  # for docstrings and descriptions: the name itself ("sql-queries")

    @classmethod
    def of(cls, name: str) -> Names:
        if not NAME.match(name) or len(name) > MAX_NAME:
            raise ScaffoldError(
                f"bad recipe name {name!r}: use lower-case words joined by '-', starting with "
                f"a letter, at most {MAX_NAME} characters (e.g. unit-conversions)"
            )
        module = name.replace("-", "_")
        if keyword.iskeyword(module):
            raise ScaffoldError(f"bad recipe name {name!r}: {module!r} is a Python keyword")
        words = name.split("-")
        return cls(
            name=name,
            module=module,
            cls="".join(w.capitalize() for w in words),
            title=name,
        )


Execute = Literal["python", "php", "none"]


@dataclass(frozen=True)
class Options:
    """The shape of the recipe: which shared building blocks its skeleton uses."""

    judge: bool = False  # a judge stage after the check, on by default (use_judge)
    topics: bool = False  # a topics_file parameter (tasks.core.seeds.load_topics)
    execute: Execute = "none"  # code + tests run in the sandbox (tasks.execution.revise)

    def summary(self) -> str:
        stages = ["topics → prompt and response", "dedup", "check"]
        if self.execute != "none":
            stages.append(f"{self.execute} run against its tests")
        if self.judge:
            stages.append("judge")
        return " → ".join(stages)

    def values(self) -> dict[str, object]:
        language = {"python": "Python", "php": "PHP", "none": ""}[self.execute]
        n = 4 + (self.execute != "none") + self.judge  # the scenario's topics
        return {
            "judge": self.judge,
            "topics": self.topics,
            "execute": self.execute,
            "language_title": language,
            "summary": self.summary(),
            "n": n,
        }


def files_for(names: Names, options: Options | None = None) -> dict[str, str]:
    """Path in the project (relative) -> template file."""
    m = names.module
    files = {
        f"flows/{m}.py": "flow.py.tmpl",
        f"tasks/recipes/{m}/__init__.py": "init.py.tmpl",
        f"tasks/recipes/{m}/stages.py": "stages.py.tmpl",
        f"tasks/recipes/{m}/recipe.py": "recipe.py.tmpl",
        f"prompts/{m}/generate.toml": "generate.toml.tmpl",
        f"expectations/{m}.generated.json": "generated.json.tmpl",
        f"expectations/{m}.kept.json": "kept.json.tmpl",
        f"winnow/testing/scenarios/{m}.py": "scenario.py.tmpl",
        f"tests/recipes/test_{m}_flow.py": "test_flow.py.tmpl",
    }
    if options is not None and options.judge:
        files[f"prompts/{m}/judge.toml"] = "judge.toml.tmpl"
    return files


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        variable_start_string="${",
        variable_end_string="}",
        block_start_string="<%",
        block_end_string="%>",
        comment_start_string="<#",
        comment_end_string="#>",
        line_statement_prefix="#%",
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def render(template: str, names: Names, options: Options) -> str:
    values = {
        "name": names.name,
        "module": names.module,
        "cls": names.cls,
        "title": names.title,
        **options.values(),
    }
    return _environment().get_template(template).render(values)


def taken(names: Names, root: Path) -> str | None:
    """Why ``names`` cannot be used in ``root``, or None."""
    from flows.registry import RECIPES, discover

    # tasks/recipes/<module>/ must not shadow a module of tasks/recipes/
    clashes = [f"tasks/recipes/{names.module}.py", f"tasks/recipes/{names.module}"]
    existing = [p for p in [*files_for(names), *clashes] if (root / p).exists()]
    if existing:
        return "refusing to overwrite existing file(s): " + ", ".join(existing)
    flows = root / "flows"
    if names.name in set(RECIPES) | set(discover(flows)):
        return f"a recipe named {names.name!r} already exists"
    return None


def scaffold(name: str, root: Path, options: Options | None = None) -> list[Path]:
    """Write the skeleton of recipe ``name`` under ``root``; returns the files written
    (``infra/prefect.yaml`` last, where it exists: the recipe's deployment is appended).
    Writes nothing when any of them exists already."""
    options = options or Options()
    names = Names.of(name)
    if not (root / "flows").is_dir() or not (root / "tasks").is_dir():
        raise ScaffoldError(f"{root} is not a Winnow project (no flows/ and tasks/ folders)")
    why = taken(names, root)
    if why:
        raise ScaffoldError(why)
    written = []
    for rel, template in files_for(names, options).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template, names, options), encoding="utf-8")
        written.append(target)
    _tidy([p for p in written if p.suffix == ".py"], root)
    deployments = root / "infra" / "prefect.yaml"
    if deployments.exists():
        declare_deployment(names, deployments, options.summary())
        written.append(deployments)
    return written


def declare_deployment(names: Names, path: Path, summary: str = "") -> None:
    """Append the recipe's deployment to ``infra/prefect.yaml`` (text appended, so the
    file's comments survive), so ``winnow serve`` and ``prefect deploy`` pick it up."""
    text = path.read_text(encoding="utf-8")
    entry = (
        f"\n  - name: {names.name}\n"
        f"    entrypoint: flows/{names.module}.py:{names.module}\n"
        f'    description: "{names.name}: {summary}"\n'
        "    tags: [winnow]\n"
        "    parameters:\n"
        "      params: {}\n"
        "    schedules: []\n"
        "    work_pool:\n"
        "      name: winnow\n"
        "      work_queue_name: default\n"
    )
    path.write_text(text.rstrip("\n") + "\n" + entry, encoding="utf-8")


def _tidy(paths: list[Path], root: Path) -> None:
    """Sort imports and format the Python files with ruff (the project's settings), so the
    skeleton passes ``ruff check`` whatever its name; skipped when ruff is missing."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        return
    files = [str(p) for p in paths]
    for argv in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
        subprocess.run([str(ruff), *argv, *files], cwd=root, capture_output=True, check=False)
