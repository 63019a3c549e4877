"""Prefect settings Winnow needs before Prefect is imported.

No internet reaches these machines: telemetry is off. The temporary local server Prefect
starts when ``PREFECT_API_URL`` is unset needs longer than its default on a busy 2-core
machine, the first time especially (it creates its database).
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
