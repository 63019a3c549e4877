"""Where Winnow keeps things.

- The *project directory* holds one project's state: the DuckDB catalog, the request
  journal and stage shards. Default: the current directory; override with
  ``WINNOW_PROJECT_DIR``. Everything lives under ``<project>/.winnow/``.
- The *cache directory* holds what is shared by every project of the user, such as the
  embedded model. Default: ``$XDG_CACHE_HOME/winnow`` or ``~/.cache/winnow``; override
  with ``WINNOW_CACHE_DIR``.
- The *shard root* holds stage shards and input shards: ``<project>/.winnow`` unless a
  run names another place (its ``storage`` parameter: a directory or an fsspec URL such
  as ``s3://bucket/prefix``).
- The *resource directories* (``prompts/``, ``expectations/``, ``examples/``) ship with
  the source tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from pydantic import BaseModel

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # tasks/core/paths.py -> the checkout

# Set while a shard task runs (see Location.active): a task on a Dask or Ray worker has
# neither the flow's environment nor its working directory, so it is told where to work.
_project: ContextVar[Path | None] = ContextVar("winnow_project", default=None)
_storage: ContextVar[str | None] = ContextVar("winnow_storage", default=None)


def project_dir() -> Path:
    override = _project.get()
    if override is not None:
        return override
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


def shard_root() -> str:
    """Where stage and input shards go: a local directory or an fsspec URL."""
    return _storage.get() or str(state_dir())


class Location(BaseModel):
    """Where a run keeps its state: the project (journal, catalog) and the shard root
    (``None``: the project's ``.winnow``). It travels with every shard task, so a worker
    process or machine needs nothing from the flow's process to find them."""

    project: str
    storage: str | None = None

    @classmethod
    def here(cls, storage: str | None = None) -> Location:
        """This process's location, with ``storage`` (default: the active one)."""
        return cls(project=str(project_dir()), storage=storage or _storage.get())

    @contextmanager
    def active(self) -> Iterator[None]:
        project = _project.set(Path(self.project))
        storage = _storage.set(self.storage)
        try:
            yield
        finally:
            _storage.reset(storage)
            _project.reset(project)
