"""Throughput of ``LLMClient`` against the test LLM server, journal on.

Starts ``python -m winnow.testing.llm_server`` in a subprocess with a fixed latency L
and a server-side concurrency cap C, sends N distinct requests through the real
OpenAI SDK path, and prints the throughput as a fraction of the ideal C/L.
Then re-runs the same requests with a fresh client: all from the journal, zero sends.

    python benchmarks/throughput.py [--requests 2000] [--latency-ms 200] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=64, help="server cap C")
    parser.add_argument(
        "--client-concurrency", type=int, default=None, help="default: C (the spec's max)"
    )
    parser.add_argument("--over-capacity", choices=["queue", "429"], default="queue")
    args = parser.parse_args()

    project = tempfile.mkdtemp(prefix="winnow-bench-")
    os.environ["WINNOW_PROJECT_DIR"] = project
    from tasks.llm.base import ChatRequest, GenerationParams, Message
    from tasks.llm.client import make_client
    from tasks.llm.prices import ModelPrice, PriceTable

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "winnow.testing.llm_server",
            "--port",
            "0",
            "--latency-ms",
            str(args.latency_ms),
            "--concurrency",
            str(args.concurrency),
            "--over-capacity",
            args.over_capacity,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        prices = PriceTable({"test-model": ModelPrice(input=0.15, output=0.60)})
        requests = [
            ChatRequest(
                messages=[Message(role="user", content=f"benchmark question number {i}")],
                params=GenerationParams(max_tokens=64),
                template="bench",
            )
            for i in range(args.requests)
        ]
        client = make_client(
            "openai-compatible",
            model="test-model",
            base_url=base_url,
            max_concurrency=args.client_concurrency or args.concurrency,
            prices=prices,
        )
        client.check()
        cpu0 = time.process_time()
        started = time.perf_counter()
        results = client.complete_many(requests)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu0) * 1000 / len(requests)
        client.close()
        failed = sum(not r.ok for r in results)
        ideal = args.concurrency / (args.latency_ms / 1000)
        rate = len(results) / elapsed

        again = make_client(
            "openai-compatible", model="test-model", base_url=base_url, prices=prices
        )
        t1 = time.perf_counter()
        rerun = again.complete_many(requests)
        rerun_s = time.perf_counter() - t1
        again.close()
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats") as response:
            stats = json.load(response)
        report = {
            "requests": len(results),
            "failed": failed,
            "elapsed_s": round(elapsed, 2),
            "throughput_rps": round(rate, 1),
            "ideal_rps_C_over_L": round(ideal, 1),
            "fraction_of_ideal": round(rate / ideal, 3),
            "server_max_in_flight": stats["max_in_flight"],
            "server_chat_requests": stats["chat_requests"],
            "duplicates_sent": sum(1 for n in stats["by_hash"].values() if n > 1),
            "client_cpu_ms_per_request": round(cpu_ms, 3),
            "load_average_1m": os.getloadavg()[0],
            "rerun_s": round(rerun_s, 2),
            "rerun_cached": sum(r.cached for r in rerun),
            "cost_usd": round(sum(r.cost_usd for r in results), 6),
        }
        print(json.dumps(report, indent=2))
        print(
            f"throughput {rate:.0f} req/s = {rate / ideal:.2f} of C/L "
            f"({args.concurrency}/{args.latency_ms / 1000:g}s = {ideal:.0f} req/s), journal on"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
