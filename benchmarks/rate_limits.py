"""Where users actually are: rate limits, quotas and overloads, whole processes timed.

Each scenario starts the test LLM server (``python -m winnow.testing``, a test double
that refuses as hosted APIs do: random 429s with Retry-After, 429s beyond its capacity,
quotas with ``x-ratelimit-*`` headers, 500s), then runs every tool against it, one after
another, each as a user would: a fresh process from the command to its exit.

- ``winnow``: ``winnow generate`` over a JSON Lines file (fresh ``WINNOW_PROJECT_DIR``);
- ``plain``: an ``openai.AsyncOpenAI`` loop with a semaphore and the SDK's own retries;
- ``curator``, ``distilabel``: their drivers (``peers/``), in their own venvs.

Figures per tool: rows answered and lost, the requests the server received and refused,
the whole process (command → exit) and the send window (the server's first request →
its last answer), each as a share of the ideal rate (C/L, or the quota), and the fixed
costs: command → first request, last answer → exit.

    .venv/bin/python benchmarks/rate_limits.py [--scenarios ...] [--tools ...]
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

from _common import ROOT, ServerProcess, bench_prompt, load_average, machine, print_table
from peers import PEERS, peer_python  # noqa: F401 - the peers' venvs

HERE = Path(__file__).resolve().parent

# name -> (requests, client concurrency, server arguments, ideal answers per second, note)
SCENARIOS: dict[str, tuple[int, int, list[str], float, str]] = {
    "random-429": (
        2000, 64,
        ["--latency-ms", "200", "--p-429", "0.2", "--p-500", "0.05",
         "--retry-after-s", "1", "--seed", "7"],
        64 / 0.2, "L = 0.2 s, C = 64; 20% immediate 429 (Retry-After 1 s), 5% 500",
    ),
    "capacity-429": (
        2000, 256,
        ["--latency-ms", "200", "--concurrency", "64", "--over-capacity", "429",
         "--retry-after-s", "1"],
        64 / 0.2, "L = 0.2 s; the server serves 64 at once, 429 beyond; client cap 256",
    ),
    "quota-rpm": (
        3000, 256, ["--latency-ms", "500", "--rpm", "12000"],
        12000 / 60, "L = 0.5 s; 12,000 requests/minute (token bucket, 1 s burst); cap 256",
    ),
    "quota-tpm": (
        3000, 256, ["--latency-ms", "500", "--tpm", "840000"],
        840000 / 60 / 69, "L = 0.5 s; 840,000 tokens/minute (69 a request); cap 256",
    ),
    "clean-10k": (
        10000, 64, ["--latency-ms", "200", "--concurrency", "64"],
        64 / 0.2, "L = 0.2 s, C = 64, no faults",
    ),
}  # fmt: skip

MAX_TOKENS = 64


def winnow_command(base_url: str, n: int, concurrency: int, work: Path) -> list[str]:
    rows = work / "in.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "instruction": bench_prompt(i)}) + "\n" for i in range(n)
        )
    )
    return [
        str(Path(sys.executable).with_name("winnow")), "generate", "--input", str(rows),
        "--out", str(work / "out.jsonl"), "--provider", "openai-compatible",
        "--model", "test-model", "--base-url", base_url, "--concurrency", str(concurrency),
        "--max-tokens", str(MAX_TOKENS), "--shard-size", "256",
    ]  # fmt: skip


def peer_command(name: str, base_url: str, n: int, concurrency: int) -> list[str]:
    common = ["--base-url", base_url, "--requests", str(n), "--concurrency", str(concurrency)]
    common += ["--max-tokens", str(MAX_TOKENS)]
    if name == "plain":
        return [sys.executable, str(HERE / "peers" / "plain_driver.py"), *common]
    if name == "curator":  # its own defaults: 10 retries; a row that still fails is lost
        common += ["--max-retries", "10", "--keep-going"]
    return [str(peer_python(name)), "-W", "ignore", str(HERE / PEERS[name]["driver"]), *common]


def run_tool(name: str, server: ServerProcess, n: int, concurrency: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    env = {**os.environ, "WINNOW_PROJECT_DIR": str(work / "project")}
    try:
        if name == "winnow":
            cmd = winnow_command(server.base_url, n, concurrency, work)
        else:
            cmd = peer_command(name, server.base_url, n, concurrency)
    except (subprocess.CalledProcessError, OSError) as exc:
        return {"error": f"could not install or import it: {exc}"}
    server.reset()
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    ended = time.time()
    stats = server.stats()
    if name == "winnow":
        out = work / "out.jsonl"
        rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        ok = sum(1 for r in rows if str(r.get("completion", "")).startswith("echo: "))
    else:
        lines = [x for x in proc.stdout.splitlines() if x.startswith('{"ok"')]
        ok = json.loads(lines[-1])["ok"] if lines else 0
    if ok == 0 and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    first, last = stats.get("first_request_at"), stats.get("last_answer_at")
    return {
        "ok": ok,
        "lost": n - ok,
        "sent": stats["chat_requests"],
        "refused": sum(stats.get("refusals", {}).values()),
        "whole_s": ended - started,
        "window_s": (last - first) if first and last else None,
        "to_first_s": (first - started) if first else None,
        "after_last_s": (ended - last) if last else None,
        "load": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--tools", nargs="+", default=["winnow", "plain", "curator", "distilabel"])
    args = parser.parse_args()

    print(f"machine: {machine()}")
    for name in args.scenarios:
        n, concurrency, server_args, ideal, note = SCENARIOS[name]
        rows = []
        with ServerProcess(*server_args) as server:
            for tool in args.tools:
                r = run_tool(tool, server, n, concurrency)
                print(f"{name} {tool}: {json.dumps(r)}", file=sys.stderr, flush=True)
                if "error" in r:
                    rows.append([tool, r["error"][:60]] + ["-"] * 9)
                    continue
                whole = r["ok"] / r["whole_s"] / ideal
                window = r["ok"] / r["window_s"] / ideal if r["window_s"] else None
                rows.append([
                    tool, r["ok"], r["lost"], r["sent"], r["refused"],
                    round(r["whole_s"], 1), round(whole, 2),
                    round(window, 2) if window else "-",
                    round(r["to_first_s"], 1) if r["to_first_s"] is not None else "-",
                    round(r["after_last_s"], 1) if r["after_last_s"] is not None else "-",
                    r["load"],
                ])  # fmt: skip
        print(f"\n{name}: {n} requests; {note}; ideal {ideal:.0f} answers/s")
        print_table(
            ["tool", "ok", "lost", "sent", "refused", "whole s", "of ideal (whole)",
             "of ideal (window)", "to 1st req s", "after last s", "load"],
            rows,
        )  # fmt: skip


if __name__ == "__main__":
    main()
