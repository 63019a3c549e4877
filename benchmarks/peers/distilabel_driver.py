"""distilabel sending the throughput benchmark's requests to one server.

Runs in distilabel's own throwaway virtual environment (made by ``benchmarks/peers.py``):
a pipeline of LoadDataFromDicts -> TextGeneration(OpenAILLM). distilabel sends the rows
of one input batch concurrently (``asyncio.gather``) and batches one after another, so
``input_batch_size`` = C is its concurrency. Prints one JSON line.
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
    os.environ.setdefault("DISTILABEL_CACHE_DIR", tempfile.mkdtemp(prefix="distilabel-bench-"))
    t0 = time.perf_counter()
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    rows = [{"instruction": bench_prompt(i)} for i in range(args.requests)]
    with Pipeline(name="winnow-bench") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=args.concurrency)
        generate = TextGeneration(
            llm=OpenAILLM(
                model="test-model",
                base_url=args.base_url,
                api_key="sk-dummy",
                max_retries=3,
                generation_kwargs={"max_new_tokens": args.max_tokens, "temperature": 0.7},
            ),
            input_batch_size=args.concurrency,
        )
        load >> generate
    setup_s = time.perf_counter() - t0
    cpu0, started = cpu_seconds(), time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    wall = time.perf_counter() - started
    cpu_ms = (cpu_seconds() - cpu0) * 1000 / args.requests
    out = distiset["default"]["train"]
    ok = sum(1 for g in out["generation"] if g and g.startswith("echo: "))
    print(json.dumps({"ok": ok, "wall_s": wall, "setup_s": setup_s, "cpu_ms_per_request": cpu_ms}))


if __name__ == "__main__":
    main()
