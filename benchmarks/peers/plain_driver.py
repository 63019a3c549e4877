"""A plain ``openai.AsyncOpenAI`` loop sending the benchmark's requests to one server: a
semaphore of C and the SDK's own retries (its defaults), what a user writes first.

Runs in Winnow's environment but imports nothing of Winnow's. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import bench_prompt, cpu_seconds, driver_args  # noqa: E402


async def run(args) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="sk-dummy")
    gate = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> bool:
        async with gate:
            try:
                response = await client.chat.completions.create(
                    model="test-model",
                    messages=[{"role": "user", "content": bench_prompt(i)}],
                    max_tokens=args.max_tokens,
                )
            except openai.OpenAIError:
                return False
            return (response.choices[0].message.content or "").startswith("echo: ")

    results = await asyncio.gather(*(one(i) for i in range(args.requests)))
    await client.close()
    return {"ok": sum(results)}


def main() -> None:
    args = driver_args()
    t0 = time.perf_counter()
    import openai  # noqa: F401

    setup_s = time.perf_counter() - t0
    cpu0, started = cpu_seconds(), time.perf_counter()
    figures = asyncio.run(run(args))
    wall = time.perf_counter() - started
    cpu_ms = (cpu_seconds() - cpu0) * 1000 / args.requests
    print(json.dumps({**figures, "wall_s": wall, "setup_s": setup_s, "cpu_ms_per_request": cpu_ms}))


if __name__ == "__main__":
    main()
