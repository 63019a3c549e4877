"""Where Winnow keeps things.

- The *project directory* holds one project's state: the DuckDB catalog, the request
  journal and stage shards. Default: the current directory; override with
  ``WINNOW_PROJECT_DIR``. Everything lives under ``<project>/.winnow/``.
- The *cache directory* holds what is shared by every project of the user, such as the
  embedded model. Default: ``$XDG_CACHE_HOME/winnow`` or ``~/.cache/winnow``; override
  with ``WINNOW_CACHE_DIR``.
- The *resource directories* (``prompts/``, ``expectations/``, ``examples/``) ship with
  the source tree.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def project_dir() -> Path:
    return Path(os.environ.get("WINNOW_PROJECT_DIR") or Path.cwd()).resolve()


def state_dir() -> Path:
    path = project_dir() / ".winnow"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    explicit = os.environ.get("WINNOW_CACHE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "winnow"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def prompts_dir() -> Path:
    return Path(os.environ.get("WINNOW_PROMPTS_DIR") or SOURCE_ROOT / "prompts")


def expectations_dir() -> Path:
    return Path(os.environ.get("WINNOW_EXPECTATIONS_DIR") or SOURCE_ROOT / "expectations")


def examples_dir() -> Path:
    return SOURCE_ROOT / "examples"


def catalog_path() -> Path:
    return state_dir() / "catalog.duckdb"


def journal_path() -> Path:
    return state_dir() / "journal.sqlite"
