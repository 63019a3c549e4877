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
from winnow.testing.llm_server import LLMTestServer, Script, ServerThread, serve_until_signalled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Winnow's test double of an LLM server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--over-capacity", choices=["queue", "429"], default=None)
    parser.add_argument("--retry-after-s", type=float, default=None)
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
    if args.api == "anthropic":
        server: ServerThread = AnthropicTestServer(script, port=args.port)
    else:
        server = LLMTestServer(script, port=args.port)
    serve_until_signalled(server)
    sys.exit(0)


if __name__ == "__main__":
    main()
