"""Parameters every recipe that runs generated code shares: where it runs and its limits."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasks.sandbox.base import Limits, SandboxKind


class SandboxParams(BaseModel):
    sandbox: SandboxKind = Field(
        "auto",
        description="where generated code runs: docker, bwrap, or auto (docker if it answers)",
    )
    timeout_s: float = Field(10.0, gt=0, le=600, description="wall time per execution")
    memory_mb: int = Field(512, ge=64, le=16384, description="memory per execution")

    def limits(self) -> Limits:
        return Limits(wall_s=self.timeout_s, cpu_s=self.timeout_s, memory_mb=self.memory_mb)

    def check_sandbox(self) -> None:
        """Refuse to go on without a sandbox (before any request is paid for)."""
        from tasks.sandbox.select import get_sandbox

        get_sandbox(self.sandbox)
