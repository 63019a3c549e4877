"""What a run says reaches its page in the Prefect UI, once and readably.

- Winnow's own loggers (``tasks.*``, ``flows.*``, ``winnow*``) write to the terminal of
  whatever process runs the flow. Prefect sends to its API only what its own run loggers
  say, and it finds the flow run from a context variable, which the threads of the LLM
  client and the shard runner do not carry. ``to_run_page(flow_run_id)`` hands every record
  of those loggers, from any thread, to Prefect's API handler stamped with the run's id,
  for as long as the run lasts: a warning such as "no price for model ..." is then on the
  run page, beside the costs it explains.
- An error the person must act on (a bad key, an unreachable server, too few kept rows)
  says everything in its message; Prefect would log it with a long traceback, once per
  failed run. ``quiet_tracebacks()`` drops the traceback of those errors only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

WINNOW_LOGGERS = ("tasks", "flows", "winnow")
# Prefect's flow and task run loggers, which log a failed run's exception.
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ToRunPage(logging.Handler):
    """Passes records to Prefect's API log handler with the flow run's id set."""

    def __init__(self, flow_run_id: str) -> None:
        super().__init__(logging.NOTSET)
        from prefect.logging.handlers import APILogHandler

        self.flow_run_id = flow_run_id
        self.api = APILogHandler()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "send_to_api", True) is False:
            return
        copy = logging.makeLogRecord(record.__dict__)
        copy.flow_run_id = self.flow_run_id
        self.api.handle(copy)


@contextmanager
def to_run_page(flow_run_id: str | None) -> Iterator[None]:
    """Winnow's log records go to the flow run's page while the block runs (nothing
    outside a flow run: a stage tested alone needs no server)."""
    if flow_run_id is None:
        yield
        return
    handler = ToRunPage(flow_run_id)
    loggers = [logging.getLogger(name) for name in WINNOW_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def actionable_errors() -> tuple[type[BaseException], ...]:
    """Errors whose one-line message tells the person what to do; their traceback only
    hides it. Imported late: the gates' module imports Great Expectations' types."""
    from pydantic import ValidationError

    from tasks.core.jsonl import InputError
    from tasks.gates.gx import GateFailed, SuiteError
    from tasks.llm.base import ConfigError, EndpointDown
    from tasks.llm.prompts import PromptError
    from tasks.pipeline.outcome import TooFewKept

    return (
        InputError,
        PromptError,
        ConfigError,
        SuiteError,
        GateFailed,
        ValidationError,
        EndpointDown,
        TooFewKept,
    )


class NoTracebackForActionable(logging.Filter):
    """Drops the traceback of an actionable error; the record itself still goes out (to
    the console and the run page)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], actionable_errors()):
            record.exc_info = None
            record.exc_text = None
            record.actionable = True  # a terminal that prints the message itself may skip it
        return True


_QUIET = NoTracebackForActionable()


def quiet_tracebacks() -> None:
    """Install the filter on Prefect's run loggers (once per process)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)
