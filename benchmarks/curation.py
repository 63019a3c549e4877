"""Near-duplicate (MinHash LSH) and semantic dedup at scale: wall time and peak memory.

Each (step, size) runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own;
``base MB`` is the same process's RSS after imports, before any row, so ``peak - base``
is what the step itself used. Rows are synthetic programming requests built from a
vocabulary, a quarter of them near-copies (a few words changed) of an earlier row; they
are generated on the fly, so the dataset is never held in the benchmark's memory.

Embedders for the semantic step:

- ``minilm``: the real int8 MiniLM ONNX model (~50-550 texts/s on 2 cores depending on
  load: 100k rows take minutes of embedding alone);
- ``hash``: bag-of-words random projections to 384 floats (near-copies stay close), to
  time the greedy selection itself at 100k without the embedding cost.

    .venv/bin/python benchmarks/curation.py [--sizes 10000 100000] [--steps minhash semantic]
        [--embedder hash|minilm] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VERBS = "write implement design build create explain refactor optimise test document".split()
OBJECTS = (
    "function class parser cache queue scheduler tokenizer validator iterator decorator "
    "server client router logger matrix graph tree heap trie index"
).split()
TOPICS = (
    "dates strings lists dictionaries files json csv sockets threads processes regexes "
    "unicode bytes streams numbers money time zones paths urls emails passwords images"
).split()
FILLER = (
    "that handles edge cases efficiently and returns a clear result for every valid input "
    "while raising a helpful error for invalid values and keeps memory use small with "
    "tests covering empty inputs large inputs and unusual characters in python"
).split()


def synthetic(n: int, seed: int = 0) -> Iterator[dict]:
    """Rows with ``id``, ``text`` and ``score``; ~25% near-copies of an earlier row."""
    rng = random.Random(seed)
    recent: list[list[str]] = []
    for i in range(n):
        if recent and rng.random() < 0.25:
            words = list(rng.choice(recent))
            for _ in range(rng.randint(1, 2)):
                words[rng.randrange(len(words))] = rng.choice(FILLER)
        else:
            words = [rng.choice(VERBS), "a", rng.choice(OBJECTS), "for", rng.choice(TOPICS)]
            words += rng.sample(FILLER, rng.randint(8, 20))
            words += [rng.choice(TOPICS), rng.choice(OBJECTS), f"v{rng.randrange(10**6)}"]
            recent.append(words)
            if len(recent) > 2000:
                recent.pop(rng.randrange(len(recent)))
        yield {"id": f"r{i}", "text": " ".join(words), "score": rng.randint(1, 10)}


class HashEmbedder:
    """Bag of words → sum of random unit vectors (a fixed table of 2^14, indexed by the
    word's CRC32, so its memory does not grow with the vocabulary) → L2-normalised."""

    def __init__(self, dim: int = 384, slots: int = 1 << 14) -> None:
        import numpy as np

        self.np = np
        self.table = np.random.default_rng(0).standard_normal((slots, dim)).astype(np.float32)

    def embed(self, texts: Sequence[str]):
        np = self.np
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for i, t in enumerate(texts):
            idx = [zlib.crc32(w.encode()) % len(self.table) for w in t.split()]
            out[i] = self.table[idx].sum(axis=0)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(step: str, size: int, embedder: str, threads: int) -> dict:
    """Run one step over ``size`` rows in this process; return its figures."""
    from tasks.curation.minhash import MinHashDedupConfig, minhash_dedup
    from tasks.curation.semantic import SemanticDedupConfig, semantic_dedup_stage
    from tasks.pipeline.stage import RunInfo, StageContext

    ctx = StageContext(run=RunInfo(run_id="bench", recipe="bench"), stage=step)
    embed_s = [0.0]
    if step == "minhash":
        fn, config = minhash_dedup, MinHashDedupConfig(fields=["text"], threshold=0.8)
    else:
        if embedder == "minilm":
            from tasks.curation.embed import MiniLMEmbedder

            model = MiniLMEmbedder(threads=threads)
        else:
            model = HashEmbedder()

        class Timed:
            def embed(self, texts):
                t = time.perf_counter()
                v = model.embed(texts)
                embed_s[0] += time.perf_counter() - t
                return v

        fn = semantic_dedup_stage(embedder=lambda _c: Timed()).fn
        config = SemanticDedupConfig(field="text", threshold=0.9, score_field="score")
    base = rss_mb()
    started = time.perf_counter()
    kept = rejected = 0
    for kind, _row in fn(synthetic(size), config, ctx):
        if kind == "kept":
            kept += 1
        else:
            rejected += 1
    wall = time.perf_counter() - started
    assert kept + rejected == size
    return {
        "step": step,
        "embedder": embedder if step == "semantic" else "",
        "rows": size,
        "kept": kept,
        "rejected": rejected,
        "wall_s": round(wall, 1),
        "embed_s": round(embed_s[0], 1),
        "rows_per_s": round(size / wall),
        "base_mb": round(base),
        "peak_mb": round(rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--steps", nargs="+", default=["minhash", "semantic"])
    parser.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, size = args.child
        print(json.dumps(child(step, int(size), args.embedder, args.threads)))
        return
    header = f"{'step':<9}{'embedder':<9}{'rows':>8}{'kept':>8}{'wall s':>8}{'embed s':>8}"
    header += f"{'rows/s':>8}{'base MB':>9}{'peak MB':>9}"
    print(header)
    for step in args.steps:
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--child", step, str(size)]
            cmd += ["--embedder", args.embedder, "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{step} {size}: failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{r['step']:<9}{r['embedder']:<9}{r['rows']:>8}{r['kept']:>8}{r['wall_s']:>8}"
                f"{r['embed_s']:>8}{r['rows_per_s']:>8}{r['base_mb']:>9}{r['peak_mb']:>9}",
                flush=True,
            )


if __name__ == "__main__":
    main()
