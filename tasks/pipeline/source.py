"""What a stage's cache key says of its code.

A stage's key hashes the source of its own function and of everything that function
uses from its own module (helpers, classes, constants), followed transitively; not the
rest of the module. So editing the judge of a recipe's ``stages.py`` re-runs the judge
and what follows it, while the problems stage above it is reused. Code in *other*
modules is not followed: when a change there alters what a stage does, bump the stage's
``version``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import types
from collections.abc import Iterator
from typing import Any

_CONSTANTS = (str, bytes, int, float, bool, type(None), tuple, frozenset)


def code_hash(*objects: Any) -> str:
    """A short hash of the source of ``objects`` and of what they use in their modules."""
    parts: list[str] = []
    seen: set[int] = set()
    for obj in objects:
        if obj is not None:
            _collect(obj, seen, parts)
    return hashlib.sha256("\n\x1e".join(parts).encode()).hexdigest()[:16]


def _collect(obj: Any, seen: set[int], parts: list[str]) -> None:
    if isinstance(obj, functools.partial):
        parts.append(repr((obj.args, sorted(obj.keywords.items()))))
        obj = obj.func
    obj = inspect.unwrap(obj)
    if id(obj) in seen:
        return
    seen.add(id(obj))
    try:
        parts.append(inspect.getsource(obj))
    except (OSError, TypeError):
        parts.append(getattr(obj, "__qualname__", repr(obj)))
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is None:
        return
    namespace = vars(module)
    for name in sorted(set(_names(obj))):
        if name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, types.FunctionType | type):
            if getattr(value, "__module__", None) == module.__name__:
                _collect(value, seen, parts)
        elif isinstance(value, _CONSTANTS) and not name.startswith("__"):
            parts.append(f"{name} = {value!r}")


def _names(obj: Any) -> Iterator[str]:
    """Global names the code of a function or of a class's methods refers to."""
    if isinstance(obj, type):
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)  # classmethod, staticmethod
            if isinstance(member, types.FunctionType):
                yield from _code_names(member.__code__)
        return
    code = getattr(obj, "__code__", None)
    if code is not None:
        yield from _code_names(code)


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # lambdas, comprehensions, inner functions
            yield from _code_names(const)
