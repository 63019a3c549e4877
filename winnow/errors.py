"""Which exceptions are the user's to fix, and how the CLI reports them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from winnow.console import fail


def _user_error_types() -> tuple[type[BaseException], ...]:
    from tasks.gates.gx import GateFailed, SuiteError
    from tasks.jsonl import InputError
    from tasks.llm.base import ConfigError
    from tasks.prompts import PromptError

    return (InputError, PromptError, ConfigError, SuiteError, GateFailed, ValidationError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable error into a one-line message and exit status 2."""
    try:
        yield
    except _user_error_types() as exc:
        raise fail(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
            + (f" (got {e['input']!r})" if isinstance(e.get("input"), str | int | float) else "")
            for e in exc.errors()
        ]
        return "invalid parameters: " + "; ".join(parts)
    return str(exc)
