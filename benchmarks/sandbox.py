"""Sandbox throughput: verifications per second against a bare interpreter start.

Measured in the same run, on the same machine, so the ratio is meaningful:

- ``bare``: ``python3 -c pass`` started with subprocess, no sandbox;
- ``bwrap`` / ``docker``: ``Sandbox.run`` of a one-line program (files written, namespaces
  or container made, limits set, output captured);
- ``verify``: ``verify_cases`` on a batch of small real cases (parse + ruff + run) with one
  worker per core.

Goal: bwrap runs at >= 0.5x the bare start rate. Docker is measured when an engine answers
(DOCKER_HOST or /var/run/docker.sock), or with ``--private-dockerd`` as root.

    .venv/bin/python benchmarks/sandbox.py [-n 60] [--private-dockerd]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import paired  # noqa: E402

from tasks.sandbox.base import Sandbox, SandboxUnavailable  # noqa: E402

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"
from tasks.sandbox.verify import Case, verify_cases  # noqa: E402


def bare() -> None:
    # The interpreter the sandbox runs (Debian's), so only the sandbox differs.
    subprocess.run([PYTHON, "-c", "pass"], check=True)


def sandbox_run(box: Sandbox) -> Callable[[], object]:
    def one() -> None:
        verdict = box.run({"main.py": "pass\n"}, ["python3", "main.py"])
        if not verdict.passed:
            raise RuntimeError(f"{box.name}: {verdict}")

    return one


def batch_rate(box: Sandbox, n: int) -> float:
    cases = [
        Case(
            id=str(i), solution=f"def f(x):\n    return x + {i}\n", tests=f"assert f(1) == {i + 1}"
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    verdicts = verify_cases(cases, "python", box)
    elapsed = time.perf_counter() - start
    assert all(v.passed for v in verdicts), [v for v in verdicts if not v.passed][:1]
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=60, help="runs per measurement")
    parser.add_argument("--private-dockerd", action="store_true", help="start one if needed")
    args = parser.parse_args()

    from tasks.sandbox.bwrap import BwrapSandbox

    boxes: list[Sandbox] = [BwrapSandbox()]
    engine = None
    try:
        from tasks.sandbox.docker_backend import DockerSandbox, connect, engine_address

        address = engine_address()
        if address is None and args.private_dockerd:
            from tasks.sandbox.engine import PrivateDockerd

            engine = PrivateDockerd()
            address = engine.start()
        if address:
            boxes.append(DockerSandbox(connect(address)))
    except SandboxUnavailable as exc:
        print(f"docker: not measured ({exc})")

    print(
        f"{'backend':8} {'bare ms':>8} {'sandbox ms':>11} {'bare/s':>7} {'sandbox/s':>10}"
        f" {'ratio':>6} {'verify_cases/s':>15}"
    )
    ratios = {}
    try:
        for box in boxes:
            n = args.n if box.name == "bwrap" else max(10, args.n // 4)
            bare_s, box_s = paired(bare, sandbox_run(box), n)
            ratios[box.name] = bare_s / box_s
            print(
                f"{box.name:8} {bare_s * 1000:8.1f} {box_s * 1000:11.1f} {1 / bare_s:7.1f}"
                f" {1 / box_s:10.1f} {ratios[box.name]:6.2f} {batch_rate(box, n):15.1f}"
            )
    finally:
        if engine is not None:
            engine.stop()
    verdict = "meets" if ratios["bwrap"] >= 0.5 else "MISSES"
    print(
        f"bwrap ratio (sandbox runs/s over bare starts/s) {ratios['bwrap']:.2f}: "
        f"{verdict} the 0.5 goal"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
