"""Which exceptions are the user's to fix, and how the CLI reports them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from winnow.console import fail


def _user_error_types() -> tuple[type[BaseException], ...]:
    from tasks.core.jsonl import InputError
    from tasks.gates.gx import GateFailed, SuiteError
    from tasks.llm.base import ConfigError
    from tasks.llm.prompts import PromptError

    return (InputError, PromptError, ConfigError, SuiteError, GateFailed, ValidationError)


def _stopping_error_types() -> tuple[type[BaseException], ...]:
    """Not the user's fault, but said in one line too: the LLM server stayed down."""
    from tasks.llm.base import EndpointDown

    return (EndpointDown,)


class _NoUserErrorTraceback(logging.Filter):
    """Prefect logs a flow's exception with its traceback; for an error the user must fix
    (a missing key, a bad file) the one-line message says it all, so drop the traceback.
    The record itself still goes out (to the console and, on a real server, the UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = _user_error_types() + _stopping_error_types()
        if record.exc_info and isinstance(record.exc_info[1], quiet):
            record.exc_info = None
            record.exc_text = None
        return True


# Prefect's flow and task run loggers (``prefect.flow_runs``, ``prefect.task_runs``).
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable error into a one-line message and exit status 2 (3 when the
    LLM server stayed unreachable: run the command again once it is back)."""
    quiet = _NoUserErrorTraceback()
    for name in _RUN_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    except _user_error_types() as exc:
        raise fail(_describe(exc)) from None
    except _stopping_error_types() as exc:
        raise fail(str(exc), code=3) from None
    finally:
        for name in _RUN_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
            + (f" (got {e['input']!r})" if isinstance(e.get("input"), str | int | float) else "")
            for e in exc.errors()
        ]
        return "invalid parameters: " + "; ".join(parts)
    return str(exc)
