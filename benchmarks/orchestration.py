"""Orchestration overhead of a full code SFT run, then the cached re-run of the same run.

A zero-latency scripted server (``_code_sft_server.py``) answers every request of
``--problems`` problems at once with valid solutions and tests (every 10th problem's
first solution is wrong, so revision happens too). The run is the real ``code-sft`` flow
(Prefect, shards, catalog, gates, bubblewrap sandbox, publish), each run in a fresh
process like ``winnow run code-sft``. Inside it, the benchmark times when LLM calls
(``LLMClient.complete_many`` / ``complete_json``: SDK, HTTP and journal), sandboxed
verification (``verify_cases``: ruff + the sandbox) and the static lint stage
(``ruff_findings``) are under way, as the union of their intervals across task threads.
What is left of the flow's wall time is orchestration: Prefect, sharding, Parquet, the
catalog, gates, dedup and publishing.

Prefect's temporary API server is started before the flow and timed apart (a fixed cost
per process, ~5-10 s, not per record).

The second run is the same run again (same project, same parameters): every stage is
reused, the server should see 0 chat requests.

    .venv/bin/python benchmarks/orchestration.py [--problems 1000] [--shard-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _code_sft_server import topics_file
from _common import ROOT, BusyClock, ServerProcess, load_average, machine, print_table

KINDS = ("llm", "verify", "lint")


def child(params_json: str) -> dict:
    """One code-sft run in this process, instrumented; its figures."""
    sys.path.insert(0, str(ROOT))
    from winnow import prefect_env

    prefect_env.apply()
    t0 = time.perf_counter()
    import tasks.recipes.code_sft.stages as stages
    from flows.registry import get_recipe
    from tasks.llm.client import LLMClient

    clock = BusyClock()
    clock.wrap(LLMClient, "complete_many", "llm")
    clock.wrap(LLMClient, "complete_json", "llm")
    clock.wrap(stages, "verify_cases", "verify")
    clock.wrap(stages, "ruff_findings", "lint")
    recipe = get_recipe("code-sft")
    params = recipe.params_model().model_validate_json(params_json)
    imports_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # starts the temporary API server
        client.hello()
    prefect_start_s = time.perf_counter() - t1

    profile = os.environ.get("WINNOW_BENCH_PROFILE")  # a file for this run's cProfile
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    summary = recipe.flow()(params)
    wall = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    busy = {kind: clock.seconds(kind) for kind in KINDS}
    return {
        "imports_s": imports_s,
        "prefect_start_s": prefect_start_s,
        "flow_s": wall,
        "busy_s": busy,
        "busy_any_s": clock.seconds(*KINDS),
        "calls": {kind: clock.count(kind) for kind in KINDS},
        "kept": summary.get("kept", 0),
        "candidates": next(
            (s["n_in"] for s in summary.get("stages", []) if s["stage"] == "static"), 0
        ),
        "llm_calls": summary.get("llm_calls", 0),
        "llm_calls_from_journal": summary.get("llm_calls_from_journal", 0),
        "reused_stages": sum(bool(s.get("reused")) for s in summary.get("stages", [])),
        "stages": len(summary.get("stages", [])),
    }


def run_once(params: dict, env: dict[str, str], profile: str | None = None) -> dict:
    if profile:
        env = {**env, "WINNOW_BENCH_PROFILE": profile}
    cmd = [sys.executable, __file__, "--child", json.dumps(params)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    process_s = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the code-sft run failed:\n{proc.stderr[-3000:]}")
    figures = json.loads(lines[-1])
    figures["process_s"] = process_s
    figures["load"] = load_average()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=16, help="the recipe's default")
    parser.add_argument("--concurrency", type=int, default=16, help="the recipe's default")
    parser.add_argument("--wrong-every", type=int, default=10)
    parser.add_argument("--profile", help="write each run's cProfile (main thread) to DIR")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return

    work = Path(tempfile.mkdtemp(prefix="winnow-orch-"))
    env = {**os.environ, "WINNOW_PROJECT_DIR": str(work / "project")}
    env["PREFECT_HOME"] = str(work / "prefect")  # a fresh temporary server database
    server_args = ["--wrong-every", str(args.wrong_every)]
    try:
        with ServerProcess(*server_args, module="_code_sft_server") as srv:
            params = {
                "out": str(work / "out"),
                "provider": "openai-compatible",
                "model": "test-model",
                "base_url": srv.base_url,
                "concurrency": args.concurrency,
                "n_problems": args.problems,
                "topics_file": str(topics_file(work / "topics.txt", args.problems)),
                "difficulties": ["easy"],
                "n_solutions": 1,
                "max_revision_rounds": 1,
                "sandbox": "bwrap",
                "shard_size": args.shard_size,
            }
            profiles = Path(args.profile) if args.profile else None
            if profiles:
                profiles.mkdir(parents=True, exist_ok=True)
            first = run_once(params, env, str(profiles / "first.prof") if profiles else None)
            first["sent"] = srv.stats()["chat_requests"]
            srv.reset()
            second = run_once(params, env, str(profiles / "rerun.prof") if profiles else None)
            second["sent"] = srv.stats()["chat_requests"]
    finally:  # the projects hold every shard: hundreds of MB
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine()}")
    print(
        f"code-sft, {args.problems} problems x 1 solution, shard size {args.shard_size}, "
        f"zero-latency scripted server, bubblewrap sandbox"
    )
    rows = []
    for name, r in (("first run", first), ("cached re-run", second)):
        other = r["flow_s"] - r["busy_any_s"]
        rows.append(
            [
                name,
                r["sent"],
                r["kept"],
                round(r["process_s"], 1),
                round(r["prefect_start_s"], 1),
                round(r["flow_s"], 1),
                round(r["busy_s"]["llm"], 1),
                round(r["busy_s"]["verify"], 1),
                round(r["busy_s"]["lint"], 1),
                round(other, 1),
                round(other * 1000 / args.problems, 1),
                r["load"],
            ]
        )
    headers = ["run", "LLM requests", "kept", "process s", "prefect start s", "flow s"]
    headers += ["LLM s", "verify s", "lint s", "other s", "other ms/record", "load"]
    print_table(headers, rows)
    overhead = (first["flow_s"] - first["busy_any_s"]) * 1000 / args.problems
    print(
        f"orchestration overhead: {overhead:.1f} ms per record outside LLM, sandbox and lint "
        f"({first['candidates']} candidates, {first['calls']['llm']} LLM batches, "
        f"{first['calls']['verify']} sandbox batches)"
    )
    print(
        f"cached re-run: {second['sent']} LLM requests (goal 0), "
        f"{second['reused_stages']}/{second['stages']} stages reused, flow wall "
        f"{second['flow_s'] / first['flow_s']:.3f} of the first run's "
        f"(process wall {second['process_s'] / first['process_s']:.3f})"
    )


if __name__ == "__main__":
    main()
