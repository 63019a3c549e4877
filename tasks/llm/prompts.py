"""Versioned prompt templates from ``prompts/``.

A template is a TOML file: ``name``, ``version``, the ``fields`` a row must have, default
generation ``params``, and ``messages`` whose contents are Jinja templates filled from a
row. The name and version travel into the journal key and the provenance of every record,
so a change of wording (a new version) never reuses answers to the old wording.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, Field, ValidationError

from tasks.core.paths import prompts_dir
from tasks.llm.base import ChatRequest, GenerationParams, Message


class PromptError(ValueError):
    """A template that is missing, malformed, or cannot be filled from a row."""


class MessageTemplate(BaseModel):
    role: str
    content: str


class PromptTemplate(BaseModel):
    name: str
    version: str
    description: str = ""
    fields: list[str] = Field(default_factory=list)
    params: GenerationParams = Field(default_factory=GenerationParams)
    messages: list[MessageTemplate]
    path: str = ""

    def missing_fields(self, row: dict[str, Any]) -> list[str]:
        return [f for f in self.fields if f not in row or row[f] in (None, "")]

    def render(self, row: dict[str, Any]) -> list[Message]:
        missing = self.missing_fields(row)
        if missing:
            raise PromptError(f"template {self.name!r} needs field(s) {missing}")
        try:
            return [
                Message(role=m.role, content=_compile(m.content).render(**row).strip())  # type: ignore[arg-type]
                for m in self.messages
            ]
        except jinja2.TemplateError as exc:
            raise PromptError(f"template {self.name!r} v{self.version}: {exc}") from exc

    def request(
        self,
        row: dict[str, Any],
        *,
        params: GenerationParams | None = None,
        sample: int = 0,
        extra_messages: list[Message] | None = None,
    ) -> ChatRequest:
        """The chat request for one row (``sample`` tells draws of one prompt apart)."""
        messages = self.render(row) + list(extra_messages or [])
        return ChatRequest(
            messages=messages,
            params=params or self.params,
            template=self.name,
            template_version=self.version,
            sample=sample,
        )


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


@lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def available() -> list[str]:
    return sorted(p.stem for p in prompts_dir().glob("*.toml"))


def load(name: str, directory: Path | None = None) -> PromptTemplate:
    """Load and check a template by name (``prompts/<name>.toml``) or by path."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.exists():
        path = candidate
    else:
        path = (directory or prompts_dir()) / f"{name}.toml"
    if not path.exists():
        raise PromptError(
            f"no prompt template {name!r} (looked for {path}); available: {', '.join(available())}"
        )
    try:
        data = tomllib.loads(path.read_text())
        template = PromptTemplate(**data, path=str(path))
    except (tomllib.TOMLDecodeError, ValidationError, TypeError) as exc:
        raise PromptError(f"malformed prompt template {path}: {exc}") from exc
    for m in template.messages:
        try:
            _compile(m.content)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"malformed prompt template {path}: {exc}") from exc
    return template
