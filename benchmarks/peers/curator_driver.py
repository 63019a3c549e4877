"""Bespoke Labs Curator sending the throughput benchmark's requests to one server.

Runs in curator's own throwaway virtual environment (made by ``benchmarks/peers.py``):
it imports nothing from Winnow but the prompt helper. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import bench_prompt, cpu_seconds, driver_args  # noqa: E402


def main() -> None:
    args = driver_args()
    # Offline and fresh: no telemetry, no cache from an earlier run, a dummy key.
    os.environ.update(
        TELEMETRY_ENABLED="false",
        CURATOR_DISABLE_CACHE="1",
        CURATOR_CACHE_DIR=tempfile.mkdtemp(prefix="curator-bench-"),
        OPENAI_API_KEY="sk-dummy",
    )
    t0 = time.perf_counter()
    # Curator counts tokens with tiktoken, which downloads cl100k_base on first use; litellm
    # (a curator dependency) ships that file, so point tiktoken's cache at it: no download.
    import litellm

    bundled = Path(litellm.__file__).parent / "litellm_core_utils" / "tokenizers"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    from bespokelabs import curator

    class Ask(curator.LLM):
        def prompt(self, input: dict) -> str:
            return input["prompt"]

    llm = Ask(
        model_name="test-model",
        backend="openai",
        generation_params={"max_tokens": args.max_tokens},
        backend_params={
            "base_url": args.base_url,
            "api_key": "sk-dummy",
            "max_concurrent_requests": args.concurrency,
            # far above what the server can do, so only the concurrency cap binds
            "max_requests_per_minute": 1_000_000,
            "max_tokens_per_minute": 1_000_000_000,
            "max_retries": args.max_retries,
            # count a row that failed after its retries as lost instead of raising
            "require_all_responses": not args.keep_going,
        },
    )
    rows = [{"prompt": bench_prompt(i)} for i in range(args.requests)]
    setup_s = time.perf_counter() - t0
    cpu0, started = cpu_seconds(), time.perf_counter()
    response = llm(rows)
    wall = time.perf_counter() - started
    cpu_ms = (cpu_seconds() - cpu0) * 1000 / args.requests
    dataset = response.dataset if hasattr(response, "dataset") else response
    ok = sum(1 for r in dataset if str(r.get("response", "")).startswith("echo: "))
    print(json.dumps({"ok": ok, "wall_s": wall, "setup_s": setup_s, "cpu_ms_per_request": cpu_ms}))


if __name__ == "__main__":
    main()
