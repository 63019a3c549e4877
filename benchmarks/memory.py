"""Peak memory of a whole `winnow generate` run at 10k and 100k records: flat, or not?

Each size is one real ``winnow generate`` process (Prefect flow, input shards, the
journaled LLM stage, a GX gate, catalog writes of every LLM call, the atomic publish in
input order) against the test LLM server at zero latency, which runs in its own process
and is not counted. Two peaks are reported for the run process and its descendants
(Prefect's temporary API server is one): the largest single process (``wait4``'s
``ru_maxrss``) and the largest sum sampled every 0.2 s. Goal: the 100k peak within 1.2x
of the 10k peak.

    .venv/bin/python benchmarks/memory.py [--sizes 10000 100000] [--shard-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import (
    ROOT,
    ServerProcess,
    bench_prompt,
    load_average,
    machine,
    print_table,
    run_measured,
)

WINNOW = Path(sys.executable).parent / "winnow"


def write_input(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"instruction": bench_prompt(i)}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="winnow-mem-"))
    rows = []
    try:
        with ServerProcess() as server:
            for n in args.sizes:
                env = {**os.environ, "WINNOW_PROJECT_DIR": str(work / f"project-{n}")}
                env["PREFECT_HOME"] = str(work / "prefect")
                source = write_input(work / f"in-{n}.jsonl", n)
                out = work / f"out-{n}.jsonl"
                cmd = [str(WINNOW), "generate", "--input", str(source), "--out", str(out)]
                cmd += ["--provider", "openai-compatible", "--model", "test-model"]
                cmd += ["--base-url", server.base_url, "--concurrency", str(args.concurrency)]
                cmd += ["--shard-size", str(args.shard_size), "--max-tokens", "64"]
                server.reset()
                r = run_measured(cmd, env=env, cwd=ROOT)
                if r["returncode"] != 0:
                    raise SystemExit(f"winnow generate failed at {n}:\n{r['stderr'][-3000:]}")
                with out.open() as f:
                    written = sum(1 for _ in f)
                sent = server.stats()["chat_requests"]
                rows.append(
                    {
                        "records": n,
                        "written": written,
                        "sent": sent,
                        "wall_s": r["wall_s"],
                        "max_rss_mb": r["max_rss_mb"],
                        "tree_peak_mb": r["tree_peak_mb"],
                        "load": load_average(),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:  # the projects hold every shard: hundreds of MB
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine()}")
    print(
        f"winnow generate, zero-latency test server, shard size {args.shard_size}, "
        f"concurrency {args.concurrency}"
    )
    table = [
        [
            r["records"],
            r["written"],
            r["sent"],
            round(r["wall_s"], 1),
            round(r["records"] / r["wall_s"]),
            round(r["max_rss_mb"]),
            round(r["tree_peak_mb"]),
            r["load"],
        ]
        for r in rows
    ]
    headers = ["records", "written", "requests", "wall s", "records/s"]
    print_table([*headers, "max RSS MB", "tree peak MB", "load"], table)
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        ratio = large["max_rss_mb"] / small["max_rss_mb"]
        tree = large["tree_peak_mb"] / small["tree_peak_mb"]
        verdict = "meets" if max(ratio, tree) <= 1.2 else "MISSES"
        print(
            f"peak RSS {large['records']} / {small['records']}: {ratio:.2f} (largest process), "
            f"{tree:.2f} (process tree): {verdict} the 1.2 goal"
        )


if __name__ == "__main__":
    main()
