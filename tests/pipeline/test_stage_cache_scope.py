"""A stage's cache key hashes its own code (its function and what that uses in its
module), not the whole module: editing one stage re-runs it and what follows it, and
nothing before it."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from tasks.pipeline.llm_stage import llm_stage
from tasks.pipeline.runner import run_stage, write_input_shards
from tasks.pipeline.source import code_hash
from tasks.pipeline.stage import RunInfo, Stage, StageOutput

RUN = RunInfo(run_id="r", recipe="scope")

MODULE = """
from tasks.pipeline.stage import StageResult

SUFFIX = "{suffix}"


def first(rows, config, ctx):
    out = StageResult()
    out.kept.extend(dict(r, first=True) for r in rows)
    return out


def _decorate(text):
    return text + SUFFIX


def second(rows, config, ctx):
    out = StageResult()
    out.kept.extend(dict(r, label=_decorate(r["id"])) for r in rows)
    return out


def unrelated():
    return {unrelated!r}
"""


class NoConfig(BaseModel):
    pass


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stage module written to disk; ``module(suffix=..., unrelated=...)`` (re)writes
    and (re)imports it, as an engineer's edit and a new run would."""
    name = f"scope_stages_{tmp_path.name.replace('-', '_')}"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(suffix: str = "!", unrelated: int = 0):
        (tmp_path / f"{name}.py").write_text(
            textwrap.dedent(MODULE.format(suffix=suffix, unrelated=unrelated))
        )
        importlib.invalidate_caches()
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    yield write
    sys.modules.pop(name, None)


def run_both(mod) -> tuple[StageOutput, StageOutput]:
    shards = write_input_shards([{"id": f"r{i}"} for i in range(5)], 2, "scope")
    first = run_stage(Stage("first", mod.first), shards, NoConfig(), RUN)
    second = run_stage(Stage("second", mod.second), first.kept, NoConfig(), RUN)
    return first, second


def test_editing_a_later_stage_reruns_only_it(module) -> None:
    first, second = run_both(module())
    assert not first.reused and not second.reused
    first, second = run_both(module())  # unchanged: both reused
    assert first.reused and second.reused

    first, second = run_both(module(unrelated=1))  # an edit elsewhere in the module
    assert first.reused and second.reused

    first, second = run_both(module(suffix="?"))  # a constant the second stage uses
    assert first.reused and not second.reused
    assert {r["label"] for r in second.kept_rows()} == {f"r{i}?" for i in range(5)}


def test_a_helper_and_a_parse_belong_to_their_stage() -> None:
    """An LLM stage's key covers its parse and its schema, not its neighbours'."""

    class Answer(BaseModel):
        value: int

    def parse_a(record, answer, config):
        return dict(record, a=answer.value)

    def parse_b(record, answer, config):
        return dict(record, b=answer.value)

    a = llm_stage("a", parse_a, schema=Answer)
    b = llm_stage("b", parse_b, schema=Answer)
    assert a.source_hash != b.source_hash
    assert a.source_hash == llm_stage("a", parse_a, schema=Answer).source_hash
    assert code_hash(parse_a) != code_hash(parse_a, Answer)
