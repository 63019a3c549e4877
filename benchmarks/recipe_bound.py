"""A whole recipe against a server with realistic latency: does it keep the server busy?

Starts the scripted code SFT server (``_code_sft_server.py``: a test double answering
every problem, solution, revision and judge request; every ``--wrong-every``-th problem
needs one revision) with latency L ± jitter, runs ``winnow run code-sft`` on it as a
user would (a fresh process and project), and compares the wall time with the bound
``requests × L / C``: the time the server needs at concurrency C if it is never idle.
The sandbox runs (bubblewrap) overlap with LLM requests when shards are chained; what
cannot overlap is about one shard's worth at the end.

    .venv/bin/python benchmarks/recipe_bound.py [--problems 300] [--solutions 4]
        [--latency-ms 2000] [--jitter 0.5] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _code_sft_server import topics_file
from _common import ROOT, ServerProcess, load_average, machine, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--solutions", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=2000.0)
    parser.add_argument("--jitter", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wrong-every", type=int, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    topics = topics_file(work / "topics.txt", args.problems)
    server_args = ["--latency-ms", str(args.latency_ms), "--latency-jitter", str(args.jitter)]
    server_args += ["--wrong-every", str(args.wrong_every)]
    with ServerProcess(*server_args, module="_code_sft_server") as server:
        cmd = [
            str(Path(sys.executable).with_name("winnow")), "run", "code-sft",
            "--provider", "openai-compatible", "--model", "test-model",
            "--base-url", server.base_url, "--out", str(work / "out"),
            "--set", f"n_problems={args.problems}", "--set", f"n_solutions={args.solutions}",
            "--set", f"concurrency={args.concurrency}", "--set", f"topics_file={topics}",
            "--set", 'difficulties=["easy"]', "--set", "sandbox=bwrap",
        ]  # fmt: skip
        env = {**os.environ, "WINNOW_PROJECT_DIR": str(work / "project")}
        started = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        ended = time.time()
        stats = server.stats()
    if proc.returncode != 0:
        sys.exit(f"winnow run failed: {proc.stderr[-2000:]}")
    funnel = json.loads((work / "out" / "funnel.json").read_text())
    requests = stats["chat_requests"]
    bound = requests * args.latency_ms / 1000 / args.concurrency
    whole = ended - started
    window = stats["last_answer_at"] - stats["first_request_at"]
    print(f"machine: {machine()}")
    print(
        f"code-sft: {args.problems} problems x {args.solutions} solutions, "
        f"L = {args.latency_ms / 1000:g} s ± {args.jitter:.0%}, C = {args.concurrency}; "
        f"kept {funnel['kept']}"
    )
    print_table(
        ["requests", "bound s", "whole s", "whole / bound", "window s", "window / bound",
         "to 1st req s", "after last s", "load"],
        [[requests, round(bound, 1), round(whole, 1), round(whole / bound, 2), round(window, 1),
          round(window / bound, 2), round(stats["first_request_at"] - started, 1),
          round(ended - stats["last_answer_at"], 1), load_average()]],
    )  # fmt: skip
    print("stage seconds: " + ", ".join(f"{s['stage']} {s['seconds']}" for s in funnel["stages"]))


if __name__ == "__main__":
    main()
