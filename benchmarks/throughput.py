"""Throughput of ``LLMClient`` against the test LLM server, journal on.

Starts ``python -m winnow.testing`` in a subprocess with a fixed latency L
and a server-side concurrency cap C, sends N distinct requests through the real
OpenAI SDK path, and prints the throughput as a fraction of the ideal C/L.
Then re-runs the same requests with a fresh client: all from the journal, zero sends.

    python benchmarks/throughput.py [--requests 2000] [--latency-ms 200] [--concurrency 64]

``benchmarks/peers.py`` runs it with ``--base-url`` beside curator and distilabel.

``--stub`` replaces the HTTP server and SDK with an in-process provider that sleeps L
under a cap of C: it measures Winnow's own overhead (journal, limiter, loop) apart from
the SDK's HTTP stack, which dominates on a small machine (~1.5-2 ms CPU per request).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from _common import ROOT, ServerProcess, bench_prompt, cpu_seconds, load_average

sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=64, help="server cap C")
    parser.add_argument(
        "--client-concurrency", type=int, default=None, help="default: C (the spec's max)"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--over-capacity",
        choices=["queue", "429"],
        default="queue",
        help="what the server does above C: queue (like vLLM) or answer 429",
    )
    parser.add_argument("--retry-after-s", type=float, default=0.1, help="for 429s")
    parser.add_argument("--stub", action="store_true", help="no HTTP: see the docstring")
    parser.add_argument(
        "--base-url", help="use this running server (no re-run); print one JSON line"
    )
    args = parser.parse_args()
    if args.stub:
        stub(args)
        return
    if args.base_url:  # the Winnow driver of benchmarks/peers.py
        print(json.dumps(measure(args.base_url, args, rerun=False)))
        return

    server_args = ["--latency-ms", str(args.latency_ms), "--concurrency", str(args.concurrency)]
    server_args += ["--over-capacity", args.over_capacity]
    server_args += ["--retry-after-s", str(args.retry_after_s)]
    with ServerProcess(*server_args) as server:
        figures = measure(server.base_url, args, rerun=True)
        stats = server.stats()
    rate = figures["ok"] / figures["wall_s"]
    ideal = args.concurrency / (args.latency_ms / 1000)
    report = {
        "requests": args.requests,
        "failed": args.requests - figures["ok"],
        "elapsed_s": round(figures["wall_s"], 2),
        "throughput_rps": round(rate, 1),
        "ideal_rps_C_over_L": round(ideal, 1),
        "fraction_of_ideal": round(rate / ideal, 3),
        "server_max_in_flight": stats["max_in_flight"],
        "server_chat_requests": stats["chat_requests"],
        "duplicates_sent": sum(1 for n in stats["by_hash"].values() if n > 1),
        "client_cpu_ms_per_request": figures["cpu_ms_per_request"],
        "load_average_1m": load_average(),
        "rerun_s": figures["rerun_s"],
        "rerun_cached": figures["rerun_cached"],
        "cost_usd": figures["cost_usd"],
    }
    print(json.dumps(report, indent=2))
    print(
        f"throughput {rate:.0f} req/s = {rate / ideal:.2f} of C/L "
        f"({args.concurrency}/{args.latency_ms / 1000:g}s = {ideal:.0f} req/s), journal on"
    )


def measure(base_url: str, args: argparse.Namespace, rerun: bool) -> dict:
    """Send ``args.requests`` distinct requests through ``LLMClient`` (a fresh project, so
    a fresh journal); with ``rerun``, send them again from a new client (all journaled)."""
    os.environ["WINNOW_PROJECT_DIR"] = tempfile.mkdtemp(prefix="winnow-bench-")
    t0 = time.perf_counter()
    from tasks.llm.base import ChatRequest, GenerationParams, Message
    from tasks.llm.client import make_client
    from tasks.llm.prices import ModelPrice, PriceTable

    prices = PriceTable({"test-model": ModelPrice(input=0.15, output=0.60)})
    requests = [
        ChatRequest(
            messages=[Message(role="user", content=bench_prompt(i))],
            params=GenerationParams(max_tokens=args.max_tokens),
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
    setup_s = time.perf_counter() - t0
    cpu0, started = cpu_seconds(), time.perf_counter()
    results = client.complete_many(requests)
    elapsed = time.perf_counter() - started
    cpu_ms = (cpu_seconds() - cpu0) * 1000 / len(requests)
    client.close()
    figures = {
        "ok": sum(r.ok for r in results),
        "wall_s": elapsed,
        "setup_s": setup_s,
        "cpu_ms_per_request": round(cpu_ms, 3),
        "cost_usd": round(sum(r.cost_usd for r in results), 6),
    }
    if rerun:
        again = make_client(
            "openai-compatible", model="test-model", base_url=base_url, prices=prices
        )
        t1 = time.perf_counter()
        repeated = again.complete_many(requests)
        figures["rerun_s"] = round(time.perf_counter() - t1, 2)
        figures["rerun_cached"] = sum(r.cached for r in repeated)
        again.close()
    return figures


def stub(args: argparse.Namespace) -> None:
    import asyncio

    os.environ["WINNOW_PROJECT_DIR"] = tempfile.mkdtemp(prefix="winnow-bench-")
    from tasks.llm.base import ChatRequest, Completion, Message, ProviderSpec, Usage
    from tasks.llm.client import LLMClient
    from tasks.llm.prices import PriceTable

    spec = ProviderSpec(
        kind="openai-compatible",
        model="stub",
        base_url="http://stub",
        max_concurrency=args.client_concurrency or args.concurrency,
    )

    class StubProvider:
        """Answers after L seconds, at most C at a time, like the test server."""

        def __init__(self) -> None:
            self.spec = spec
            self.cap: asyncio.Semaphore | None = None

        name = "openai-compatible"
        model = "stub"

        async def check(self) -> None:
            self.cap = asyncio.Semaphore(args.concurrency)

        async def complete(self, request: ChatRequest) -> Completion:
            assert self.cap is not None
            async with self.cap:
                await asyncio.sleep(args.latency_ms / 1000)
            return Completion(text="ok", usage=Usage(prompt_tokens=5, completion_tokens=1))

        async def aclose(self) -> None:
            return None

    client = LLMClient(spec, provider=StubProvider(), prices=PriceTable({}))
    client.check()
    requests = [
        ChatRequest(messages=[Message(role="user", content=bench_prompt(i))])
        for i in range(args.requests)
    ]
    cpu0, started = time.process_time(), time.perf_counter()
    client.complete_many(requests)
    elapsed = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu0) * 1000 / len(requests)
    ideal = args.concurrency / (args.latency_ms / 1000)
    rate = len(requests) / elapsed
    print(
        f"stub provider: {rate:.0f} req/s = {rate / ideal:.2f} of C/L, "
        f"{cpu_ms:.2f} ms CPU per request (journal on, no HTTP)"
    )


if __name__ == "__main__":
    main()
