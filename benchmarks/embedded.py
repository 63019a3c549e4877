"""Tokens per second of Winnow's local provider against llama-cpp-python called directly.

Same GGUF (``winnow model --path``), same prompts, same ``max_tokens``, temperature 0,
top_p 1, the same context size and ``n_threads`` (the local provider's: one per core).
Winnow's side is the whole client path (``LLMClient.complete_many``: journal lookup,
the loop thread, the provider's executor, journal write) on prompts it has not seen;
the direct side is ``Llama.create_chat_completion``. Runs alternate, Winnow first on
even prompts and second on odd ones, so load and cache warmth hit both alike; each
side's tokens/s is its completion tokens over its summed wall time.

The machine is shared: run it once, with small settings.

    .venv/bin/python benchmarks/embedded.py [--prompts 3] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

from _common import ROOT, load_average, machine, print_table

PROMPTS = [
    "Write a Python function that reverses the words of a sentence.",
    "Explain in three sentences what a hash table is.",
    "Write a Python function that checks whether a number is prime.",
    "List four uses of the Python standard library module itertools.",
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Explain the difference between a process and a thread.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ["WINNOW_PROJECT_DIR"] = tempfile.mkdtemp(prefix="winnow-embedded-")
    sys.path.insert(0, str(ROOT))
    from llama_cpp import Llama

    from tasks.llm.base import ChatRequest, GenerationParams, Message
    from tasks.llm.client import make_client
    from tasks.llm.local_provider import N_CTX, embedded_model_path

    path = embedded_model_path()
    client = make_client("local", model=str(path))
    client.check()  # loads the model once, like a run does
    direct = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=os.cpu_count() or 1, verbose=False)

    def winnow(prompt: str) -> int:
        request = ChatRequest(
            messages=[Message(role="user", content=prompt)],
            params=GenerationParams(temperature=0.0, top_p=1.0, max_tokens=args.max_tokens),
        )
        [result] = client.complete_many([request])
        if not result.ok or result.cached:
            raise RuntimeError(f"winnow: {result.error or 'answered from the journal'}")
        return result.usage.completion_tokens

    def llama(prompt: str) -> int:
        out = direct.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
            top_p=1.0,
            max_tokens=args.max_tokens,
        )
        return out["usage"]["completion_tokens"]

    sides: dict[str, Callable[[str], int]] = {"winnow local": winnow, "llama-cpp direct": llama}
    tokens = dict.fromkeys(sides, 0)
    seconds = dict.fromkeys(sides, 0.0)
    for i in range(args.prompts):
        prompt = PROMPTS[i % len(PROMPTS)] + (f" (#{i})" if i >= len(PROMPTS) else "")
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            started = time.perf_counter()
            tokens[name] += sides[name](prompt)
            seconds[name] += time.perf_counter() - started
    client.close()
    direct.close()

    print(f"machine: {machine()}")
    print(
        f"model: {path.name}, {args.prompts} prompts x max {args.max_tokens} tokens, "
        f"temperature 0, n_threads {os.cpu_count()}; load {load_average()}"
    )
    rates = {name: tokens[name] / seconds[name] for name in sides}
    rows = [[n, tokens[n], round(seconds[n], 2), round(rates[n], 2)] for n in sides]
    print_table(["side", "tokens", "wall s", "tokens/s"], rows)
    ratio = rates["winnow local"] / rates["llama-cpp direct"]
    verdict = "meets" if ratio >= 0.95 else "MISSES"
    print(f"winnow local / llama-cpp direct: {ratio:.3f} ({verdict} the 0.95 goal)")


if __name__ == "__main__":
    main()
