"""The test LLM server answering code SFT requests for any number of problems, at once.

A regex script would need one rule per problem; this engine instead reads the problem's
tag from the request and writes a valid answer for it:

- problem request ("problem about: bench topic 00042") -> a JSON problem tagged
  ``[t00042]``: write ``f_t00042(x: int) -> int`` returning ``x + 42``;
- solution request -> a linted solution and its assert tests; for every
  ``--wrong-every``-th problem the first solution adds the wrong number, so the run goes
  through one revision for it;
- revision request ("failed its checks") -> the right solution;
- judge request ("Grade two things") -> pass and pass.

    python benchmarks/_code_sft_server.py --port 0 [--latency-ms 0] [--latency-jitter 0.5]
        [--wrong-every 10]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import (
    LLMTestServer,
    Reply,
    Script,
    ScriptEngine,
    render_messages,
    serve_until_signalled,
)

TOPIC = re.compile(r"problem about: bench topic (\d+)")
TAG = re.compile(r"\[t(\d+)\]")
JUDGE_PASS = json.dumps({"correctness": "pass", "style": "pass", "reason": "clear and right"})


def topics_file(path: Path, n: int) -> Path:
    """``n`` distinct topics the engine recognises, one per line."""
    path.write_text("".join(f"bench topic {i:05d}\n" for i in range(n)))
    return path


def problem(number: int) -> str:
    return json.dumps(
        {
            "title": f"Add {number}",
            "problem": f"Write `f_t{number:05d}(x: int) -> int` returning x plus {number}. "
            f"[t{number:05d}]",
        }
    )


def answer(number: int, wrong: bool = False) -> str:
    name = f"f_t{number:05d}"
    added = number + 1 if wrong else number
    return (
        f"Adds {number}.\n```python\ndef {name}(x: int) -> int:\n"
        f'    """Return x plus {number}."""\n    # one addition\n    return x + {added}\n```\n'
        f"```python\nassert {name}(0) == {number}\nassert {name}(-{number}) == 0\n"
        f"assert {name}(1) == {number + 1}\n```"
    )


class CodeSFTEngine(ScriptEngine):
    """Answers from the request's tag instead of a list of rules."""

    def __init__(self, script: Script, wrong_every: int) -> None:
        super().__init__(script)
        self.wrong_every = wrong_every

    def choose(self, messages: list[dict[str, Any]], json_mode: bool) -> Reply:
        text = render_messages(messages)
        if "Grade two things" in text:
            return Reply(text=JUDGE_PASS)
        if found := TOPIC.search(text):
            return Reply(text=problem(int(found.group(1))))
        if found := TAG.search(text):
            number = int(found.group(1))
            if "failed its checks" in text:
                return Reply(text=answer(number))
            wrong = self.wrong_every > 0 and number % self.wrong_every == 0
            return Reply(text=answer(number, wrong=wrong))
        return super().choose(messages, json_mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="latency ± share")
    parser.add_argument("--wrong-every", type=int, default=10, help="0: never wrong")
    args = parser.parse_args()
    script = Script(latency_ms=args.latency_ms, latency_jitter=args.latency_jitter)
    server = LLMTestServer(script, port=args.port)
    server.app.engine = CodeSFTEngine(script, args.wrong_every)
    serve_until_signalled(server)


if __name__ == "__main__":
    main()
