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


class _SaidByTheCommand(logging.Filter):
    """The terminal's copy of Prefect's "Encountered exception" line for an actionable
    error: the command prints that error itself, once (the UI still gets the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "actionable", False)


def _console_handlers() -> list[logging.Handler]:
    import prefect.main  # noqa: F401  (its import sets up the handlers)
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    return [h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable error into a one-line message and exit status 2 (3 when the
    LLM server stayed unreachable: run the command again once it is back; 4 when the run
    kept fewer examples than ``min_kept``, after publishing them)."""
    from tasks.pipeline.outcome import TooFewKept
    from tasks.pipeline.run_logs import quiet_tracebacks

    quiet_tracebacks()  # the flow's run loggers drop the traceback of these errors
    said = _SaidByTheCommand()
    handlers = _console_handlers()
    for handler in handlers:
        handler.addFilter(said)
    try:
        yield
    except _user_error_types() as exc:
        raise fail(_describe(exc)) from None
    except _stopping_error_types() as exc:
        raise fail(str(exc), code=3) from None
    except TooFewKept as exc:
        raise fail(str(exc), code=4) from None
    finally:
        for handler in handlers:
            handler.removeFilter(said)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
            + (f" (got {e['input']!r})" if isinstance(e.get("input"), str | int | float) else "")
            for e in exc.errors()
        ]
        return "invalid parameters: " + "; ".join(parts)
    return str(exc)
