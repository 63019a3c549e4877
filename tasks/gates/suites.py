"""Quality-gate suites: JSON files in ``expectations/``, loaded and checked without GX.

A suite is GX's own suite JSON plus two fields of ours (see ``expectations/README.md``)::

    {"name": "generate.completions", "severity": "critical", "description": "...",
     "expectations": [{"type": "expect_column_values_to_not_be_null",
                       "kwargs": {"column": "completion"}}]}

Everything here runs before a run spends money, so it must be cheap: importing GX costs
seconds, so the expectation types are checked against the expectation modules GX ships
(found on disk, not imported). ``gx.check_suites(..., deep=True)`` goes further and builds
each expectation with GX itself, which also checks its kwargs.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.core.paths import expectations_dir

Severity = Literal["critical", "warning"]
SUITE_SUFFIX = ".json"


class SuiteError(ValueError):
    """A suite file is missing or malformed. The message names the file."""


class ExpectationSpec(BaseModel):
    """One expectation, in GX's JSON shape (``type`` + ``kwargs``)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] | None = None
    notes: str | list[str] | None = None
    description: str | None = None
    # Present in suites exported from GX; ignored here (the suite's severity decides).
    id: str | None = Field(default=None, exclude=True)
    rendered_content: Any = Field(default=None, exclude=True)
    severity: str | None = Field(default=None, exclude=True)

    def to_gx(self) -> dict[str, Any]:
        """The dict GX's ``ExpectationSuite(expectations=[...])`` accepts."""
        return self.model_dump(exclude_none=True)


class SuiteSpec(BaseModel):
    """A named suite with its severity: ``critical`` stops a run, ``warning`` is logged."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    severity: Severity
    description: str = ""
    expectations: list[ExpectationSpec] = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, exclude=True)  # from GX exports; ignored
    notes: str | list[str] | None = None
    source: Path | None = Field(default=None, exclude=True)  # the file it came from

    @field_validator("expectations")
    @classmethod
    def _known_types(cls, expectations: list[ExpectationSpec]) -> list[ExpectationSpec]:
        known = known_expectation_types()
        if not known:  # GX not installed: nothing to check against
            return expectations
        for spec in expectations:
            if spec.type not in known:
                close = difflib.get_close_matches(spec.type, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown expectation type {spec.type!r}{hint}")
        return expectations


@lru_cache(maxsize=1)
def known_expectation_types() -> frozenset[str]:
    """The expectation types GX ships, from its module names (without importing GX)."""
    spec = importlib.util.find_spec("great_expectations")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    core = Path(next(iter(spec.submodule_search_locations))) / "expectations" / "core"
    return frozenset(p.stem for p in core.glob("expect_*.py"))


def suite_path(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Where the suite ``name`` lives: ``<expectations dir>/<name>.json``."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise SuiteError(
            f"bad suite name {name!r}: use a plain name such as 'generate.completions'"
        )
    return Path(directory or expectations_dir()) / f"{name}{SUITE_SUFFIX}"


def list_suites(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the suites in the expectations directory."""
    root = Path(directory or expectations_dir())
    return sorted(p.name[: -len(SUITE_SUFFIX)] for p in root.glob(f"*{SUITE_SUFFIX}"))


def _format_validation(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_suite(text: str, source: str | os.PathLike[str] = "<string>") -> SuiteSpec:
    """A suite from its JSON text; ``source`` names it in error messages."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a JSON object, got {type(data).__name__}")
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(f"{source}: malformed suite:\n{_format_validation(exc)}") from exc
    return spec.model_copy(update={"source": Path(source)})


def load_suite(name: str, directory: str | os.PathLike[str] | None = None) -> SuiteSpec:
    """Load and check the suite ``name`` (``SuiteError`` if missing or malformed).

    The ``name`` inside the file must match the file name, so a copied suite can't
    silently report under its original's name.
    """
    path = suite_path(name, directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        available = ", ".join(list_suites(path.parent)) or "none"
        raise SuiteError(
            f"no suite {name!r}: {path} does not exist (available: {available})"
        ) from None
    spec = parse_suite(text, path)
    if spec.name != name:
        raise SuiteError(f"{path}: the suite inside is named {spec.name!r}, expected {name!r}")
    return spec
