"""``python -m winnow.testing``: serve a test double of an LLM API on a port, for tests
and benchmarks that need it in another process. NOT a model: scripted or echoed answers.

    python -m winnow.testing --port 0 --latency-ms 200 --concurrency 64
    python -m winnow.testing --api anthropic --script script.json

It prints its base URL on the first line of stdout and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from winnow.testing.anthropic_server import AnthropicTestServer
from winnow.testing.llm_server import (
    LLMTestServer,
    Quota,
    Script,
    ServerThread,
    serve_until_signalled,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Winnow's test double of an LLM server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--over-capacity", choices=["queue", "429"], default=None)
    parser.add_argument("--retry-after-s", type=float, default=None)
    parser.add_argument("--latency-jitter", type=float, default=None, help="latency ± share")
    for fault in ("429", "500", "503", "529"):
        parser.add_argument(f"--p-{fault}", type=float, default=None, help=f"share of {fault}s")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random faults")
    parser.add_argument("--rpm", type=float, default=None, help="quota: requests per minute")
    parser.add_argument("--tpm", type=float, default=None, help="quota: tokens per minute")
    parser.add_argument("--burst-s", type=float, default=1.0, help="quota buckets hold this")
    parser.add_argument("--script", type=Path, default=None, help="a JSON Script")
    parser.add_argument("--api", choices=["openai", "anthropic"], default="openai")
    args = parser.parse_args(argv)
    script = Script.model_validate_json(args.script.read_text()) if args.script else Script()
    if args.latency_ms is not None:
        script.latency_ms = args.latency_ms
    if args.concurrency is not None:
        script.concurrency = args.concurrency
    if args.over_capacity is not None:
        script.over_capacity = args.over_capacity
    if args.retry_after_s is not None:
        script.retry_after_s = args.retry_after_s
    if args.latency_jitter is not None:
        script.latency_jitter = args.latency_jitter
    for fault in ("429", "500", "503", "529"):
        if getattr(args, f"p_{fault}") is not None:
            setattr(script.faults, f"p_{fault}", getattr(args, f"p_{fault}"))
    if args.seed is not None:
        script.faults.seed = args.seed
    if args.rpm or args.tpm:
        script.quota = Quota(
            requests_per_minute=args.rpm, tokens_per_minute=args.tpm, burst_s=args.burst_s
        )
    if args.api == "anthropic":
        server: ServerThread = AnthropicTestServer(script, port=args.port)
    else:
        server = LLMTestServer(script, port=args.port)
    serve_until_signalled(server)
    sys.exit(0)


if __name__ == "__main__":
    main()
