"""Code SFT: problems → N solutions with tests → static checks → execution with revision
→ judge → dedup → publish. Llama 3's recipe for code data verified by execution."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.code.sft import CodeSFTParams, plan, publish_code_sft
from tasks.code.stages import EXECUTE, JUDGE, PROBLEMS, SOLUTIONS, STATIC
from tasks.curation.optional import curate
from tasks.dedup import exact_dedup_stage
from tasks.pipeline import Run
from tasks.stage import write_input_shards


@flow(name="code-sft", log_prints=True)
def code_sft(params: CodeSFTParams = CodeSFTParams()) -> dict[str, Any]:  # noqa: B008
    p = plan(params)  # every check that can fail before money is spent
    run = Run("code-sft", params)
    with run.guard(params.out):
        seeds = write_input_shards(p.seeds, params.shard_size, "code-sft")
        problems = run.stage(PROBLEMS, seeds, p.problems)
        unique = run.global_stage(exact_dedup_stage("unique_problems"), problems.kept, p.unique)
        run.gate(unique, "code_sft.problems")
        candidates = run.stage(SOLUTIONS, unique.kept, p.solutions)
        run.gate(candidates, "code_sft.solutions")
        static = run.stage(STATIC, candidates.kept, p.static)
        executed = run.stage(EXECUTE, static.kept, p.execute)
        run.gate(executed, "code_sft.executed")
        judged = run.stage(JUDGE, executed.kept, p.judge)
        unique_final = run.global_stage(exact_dedup_stage("dedup"), judged.kept, p.dedup)
        # optional, by parameter: contamination check, near-duplicate and semantic dedup
        curated = curate(run, unique_final, p.curation)
        final = curated[-1] if curated else unique_final
        run.gate(final, "code_sft.kept")
        stages = [problems, unique, candidates, static, executed, judged, unique_final, *curated]
        return publish_code_sft(run, params.out, final, stages)
