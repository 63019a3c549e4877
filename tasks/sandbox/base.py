"""One way to run untrusted code: files + command + limits -> verdict.

Generated code is hostile until proven otherwise. Every backend runs it with no network,
a read-only root, no host files beyond its own temporary directory, and bounded CPU time,
wall time, memory, processes and output size.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field

Stage = Literal["parse", "compile", "execute", "timeout", "limit"]
SandboxKind = Literal["auto", "docker", "bwrap"]


class Limits(BaseModel):
    cpu_s: float = Field(10.0, gt=0, description="CPU seconds")
    wall_s: float = Field(20.0, gt=0, description="wall-clock seconds")
    memory_mb: int = Field(512, ge=16, description="address space / memory cap")
    processes: int = Field(32, ge=1, description="max processes/threads")
    output_bytes: int = Field(1_000_000, ge=1024, description="stdout+stderr cap")
    tmp_mb: int = Field(64, ge=1, description="size of the writable temp dir")


class Verdict(BaseModel):
    passed: bool
    stage: Stage
    exit_code: int | None = None
    stdout: str = ""  # tail
    stderr: str = ""  # tail
    duration_s: float = 0.0
    reason: str = ""
    backend: str = ""


class SandboxUnavailable(RuntimeError):
    """No backend can run generated code here; the message says how to install one."""


class Sandbox(Protocol):
    name: str

    def run(
        self, files: dict[str, str], command: list[str], limits: Limits | None = None
    ) -> Verdict:
        """Write ``files`` into a fresh temp dir (the working directory), run ``command``
        there under ``limits``, and report. Never raises for anything the code does."""
        ...
