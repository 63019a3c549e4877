"""The deployments declared in ``infra/prefect.yaml``, read once for both ways to run them.

``prefect deploy --prefect-file infra/prefect.yaml`` reads the file itself (teams with a
work pool); ``winnow serve`` reads it here and turns each entry into a runner deployment
(one machine, no work pool). Keeping one file means a schedule or a default parameter
changed there changes both.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.paths import SOURCE_ROOT

DEFAULT_FILE = SOURCE_ROOT / "infra" / "prefect.yaml"


class CronEntry(BaseModel):
    """One schedule of a deployment (only cron schedules are declared)."""

    model_config = ConfigDict(extra="forbid")

    cron: str
    timezone: str = "UTC"
    active: bool = True


class WorkPoolEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class DeploymentEntry(BaseModel):
    """One ``deployments:`` item of prefect.yaml, as far as Winnow uses it."""

    model_config = ConfigDict(extra="allow")

    name: str
    entrypoint: str  # "flows/rag_qa.py:rag_qa"
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[CronEntry] = Field(default_factory=list)
    work_pool: WorkPoolEntry | None = None

    @property
    def module(self) -> str:
        """The entrypoint's file as an importable module name ("flows.rag_qa")."""
        path, _, _ = self.entrypoint.partition(":")
        return path.removesuffix(".py").replace("/", ".")

    @property
    def flow_attr(self) -> str:
        return self.entrypoint.partition(":")[2]

    def load_flow(self) -> Any:
        return getattr(importlib.import_module(self.module), self.flow_attr)


class DeclaredDeployments(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = "winnow"
    deployments: list[DeploymentEntry]

    def get(self, name: str) -> DeploymentEntry:
        for entry in self.deployments:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.deployments)
        raise KeyError(f"no deployment {name!r} in prefect.yaml; declared: {known}")


def load(path: Path | str | None = None) -> DeclaredDeployments:
    file = Path(path) if path else DEFAULT_FILE
    return DeclaredDeployments.model_validate(yaml.safe_load(file.read_text()))


def to_runner_deployment(
    entry: DeploymentEntry,
    *,
    schedules: bool = True,
    extra_cron: str | None = None,
) -> Any:
    """A runner deployment for ``prefect.serve``: the flow, its default parameters, its
    declared cron schedules (inactive when ``schedules`` is false) and ``extra_cron``.

    The work pool is left out on purpose: served deployments run in the serving process's
    own runner, and Prefect warns when a served deployment names a pool. The parameter
    schema is the recipe's form (``deployment_schema``: no field starts as null).
    """
    from prefect.schedules import Cron
    from prefect.utilities.callables import ParameterSchema

    from tasks.pipeline.form import deployment_schema

    crons = [
        Cron(s.cron, timezone=s.timezone, active=s.active and schedules) for s in entry.schedules
    ]
    if extra_cron:
        crons.append(Cron(extra_cron, timezone="UTC", active=True))
    deployment = entry.load_flow().to_deployment(
        name=entry.name,
        description=entry.description,
        tags=entry.tags,
        parameters=entry.parameters,
        schedules=crons,
    )
    schema = deployment_schema(deployment._parameter_openapi_schema.model_dump())
    deployment._parameter_openapi_schema = ParameterSchema(**schema)
    return deployment
