"""LLM-bound throughput: Winnow beside bespokelabs curator and distilabel, same server.

One test LLM server (latency L, server-side cap C, queueing above C) serves every tool in
turn; each tool sends the same N distinct chat requests (``bench_prompt(i)``, max_tokens
64) at its highest sensible concurrency (C) from its own process, and reports its wall
time from the first request to the last answer (its imports and set-up are reported
apart, not counted). The server's counts are read and reset between tools.

The peers are not dependencies: each gets a throwaway virtual environment made with
``uv`` in ``~/.cache/winnow/bench-venvs/`` (kept, so a second run starts at once).

    .venv/bin/python benchmarks/peers.py [--requests 2000] [--latency-ms 200]
        [--concurrency 64] [--tools winnow curator distilabel]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _common import ROOT, ServerProcess, load_average, machine, print_table

HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("WINNOW_CACHE_DIR", Path.home() / ".cache" / "winnow")) / "bench-venvs"

# What each peer needs in its venv, pinned. distilabel's OpenAI client imports `requests`
# without declaring it.
PEERS: dict[str, dict[str, list[str] | str]] = {
    "curator": {
        "packages": ["bespokelabs-curator==0.1.31"],
        "check": "import bespokelabs.curator",
        "driver": "peers/curator_driver.py",
    },
    "distilabel": {
        "packages": ["distilabel[openai]==1.5.3", "requests"],
        "check": "import distilabel.models, distilabel.pipeline",
        "driver": "peers/distilabel_driver.py",
    },
}


def peer_python(name: str) -> Path:
    """The peer's venv interpreter, made (or remade when its pins changed) with uv."""
    spec = PEERS[name]
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".winnow-pins"
    wanted = json.dumps(spec["packages"])
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        shutil.rmtree(venv, ignore_errors=True)
        VENVS.mkdir(parents=True, exist_ok=True)
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        subprocess.run([uv, "pip", "install", "-q", *spec["packages"]], check=True, env=env)
        marker.write_text(wanted)
    subprocess.run([str(python), "-W", "ignore", "-c", str(spec["check"])], check=True)
    return python


def run_tool(name: str, base_url: str, args: argparse.Namespace) -> dict:
    """Run one tool's driver against the server; its JSON figures, or ``error``."""
    common = ["--base-url", base_url, "--requests", str(args.requests)]
    common += ["--concurrency", str(args.concurrency), "--max-tokens", str(args.max_tokens)]
    try:
        if name == "winnow":
            cmd = [sys.executable, str(HERE / "throughput.py"), *common]
        else:
            cmd = [str(peer_python(name)), "-W", "ignore", str(HERE / PEERS[name]["driver"])]
            cmd += common
    except (subprocess.CalledProcessError, OSError) as exc:
        return {"error": f"could not install or import it: {exc}"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"ok"')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=64, help="server cap C")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--tools", nargs="+", default=["winnow", "curator", "distilabel"])
    args = parser.parse_args()

    ideal = args.concurrency / (args.latency_ms / 1000)
    server_args = ["--latency-ms", str(args.latency_ms), "--concurrency", str(args.concurrency)]
    results: dict[str, dict] = {}
    with ServerProcess(*server_args) as server:
        for name in args.tools:
            server.reset()
            figures = run_tool(name, server.base_url, args)
            stats = server.stats()
            figures["sent"] = stats["chat_requests"]
            figures["max_in_flight"] = stats["max_in_flight"]
            figures["load"] = load_average()
            results[name] = figures
            print(f"{name}: {json.dumps(figures)}", file=sys.stderr, flush=True)

    print(f"machine: {machine()}")
    print(
        f"{args.requests} requests, L = {args.latency_ms:g} ms, C = {args.concurrency}: "
        f"C/L = {ideal:.0f} req/s; wall = first request to last answer (set-up apart)"
    )
    base = results.get("winnow", {})
    base_rate = base["ok"] / base["wall_s"] if "wall_s" in base else None
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", "-", r["load"]])
            continue
        rate = r["ok"] / r["wall_s"]
        ratio = round(rate / base_rate, 2) if base_rate else None
        rows.append(
            [
                name,
                r["ok"],
                round(r["wall_s"], 2),
                round(rate),
                round(rate / ideal, 3),
                ratio,
                r["max_in_flight"],
                round(r["cpu_ms_per_request"], 2),
                round(r["setup_s"], 1),
                r["load"],
            ]
        )
    headers = ["tool", "requests ok", "wall s", "req/s", "of C/L", "vs winnow"]
    headers += ["max in flight", "client CPU ms/req", "set-up s", "load"]
    print_table(headers, rows)
    for name, r in results.items():
        if "error" in r:
            print(f"{name}: not measured: {r['error']}")


if __name__ == "__main__":
    main()
