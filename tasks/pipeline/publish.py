"""Publishing a recipe's results: dataset, rejections, funnel, preference pairs, and the
run's report and dataset card.

Everything is streamed from the stage shards, written into one directory atomically
(``tasks.store.publish``). ``Run.publish`` calls it with every stage output the run
recorded, so every rejection of every stage reaches ``rejected.jsonl``, and with the
funnel computed from those outputs, never counted by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import duckdb

from tasks.pipeline.card import write_card
from tasks.pipeline.facts import RunFacts
from tasks.pipeline.report import write_report
from tasks.pipeline.stage import StageOutput
from tasks.store import fsio
from tasks.store.catalog import Catalog
from tasks.store.publish import publish
from tasks.store.publish_url import publish_to_url


def rejected_rows(outputs: Iterable[StageOutput]) -> Iterator[dict[str, Any]]:
    """Every rejection of every stage, in stage order: ``id``, ``stage``, ``reason``, ..."""
    for output in outputs:
        for rejection in output.rejections():
            yield rejection.published()


def preference_pairs(
    kept: StageOutput, rejected: Iterable[StageOutput], key: str = "problem_id"
) -> Iterator[dict[str, Any]]:
    """DPO pairs for free: for a problem with a kept and a failed candidate, ``prompt``,
    ``chosen`` and ``rejected``. A DuckDB join over the shards keeps memory flat."""
    kept_files = [s.path for s in kept.kept if s.rows]
    rej_files = [s.path for o in rejected for s in o.rejected if s.rows]
    if not kept_files or not rej_files:
        return
    con = duckdb.connect()
    fsio.register_with_duckdb(con, [*kept_files, *rej_files])  # shards behind a URL
    try:
        cursor = con.execute(
            f"""
            WITH k AS (
                SELECT {key} AS pid, any_value(problem) AS problem, any_value(solution) AS chosen
                FROM read_parquet($kept, union_by_name = true) GROUP BY {key}
            ), r AS (
                SELECT json_extract_string(record, '$.{key}') AS pid,
                       any_value(json_extract_string(record, '$.solution')) AS rejected,
                       any_value(stage) AS stage, any_value(reason) AS reason
                FROM read_parquet($rejected, union_by_name = true)
                WHERE json_extract_string(record, '$.solution') IS NOT NULL
                GROUP BY pid
            )
            SELECT k.pid, k.problem, k.chosen, r.rejected, r.stage, r.reason
            FROM k JOIN r USING (pid) ORDER BY k.pid
            """,
            {"kept": kept_files, "rejected": rej_files},
        )
        while batch := cursor.fetchmany(1000):
            for pid, problem, chosen, rejected_code, stage, reason in batch:
                yield {
                    "prompt": problem,
                    "chosen": chosen,
                    "rejected": rejected_code,
                    "metadata": {key: pid, "rejected_stage": stage, "rejected_reason": reason},
                }
    finally:
        con.close()


def revision_summary(outputs: list[StageOutput], final: StageOutput) -> dict[str, Any]:
    """Funnel figures of recipes with an execute-and-revise stage."""
    executed = next(s for s in outputs if s.stage == "execute")
    revised = tests_repaired = 0
    for r in final.kept_rows(columns=["revision_rounds", "tests_revised"]):
        revised += bool(r.get("revision_rounds"))
        tests_repaired += bool(r.get("tests_revised"))
    return {
        "kept_needing_revision": revised,
        "kept_with_tests_repaired": tests_repaired,
        "passed_execution": executed.n_kept,
    }


def publish_dataset(
    out_dir: str,
    final: StageOutput,
    outputs: list[StageOutput],
    to_example: Callable[[dict[str, Any]], dict[str, Any]],
    funnel: dict[str, Any],
    extra: dict[str, Any] | None = None,
    facts: RunFacts | None = None,
) -> None:
    """Write dataset.jsonl/.parquet (``to_example`` of every kept row), rejected.jsonl
    (every rejection of ``outputs``), ``extra`` files and funnel.json, atomically; with
    the run's ``facts``, its report (report.html) and dataset card (README.md) too,
    written last from the files before them."""
    files: dict[str, Any] = {
        "dataset.jsonl": (to_example(r) for r in final.kept_rows()),
        "dataset.parquet": (to_example(r) for r in final.kept_rows()),
        "rejected.jsonl": rejected_rows(outputs),
        **(extra or {}),
        "funnel.json": funnel,
    }
    if facts is not None:  # read the files above, so written after them (in dict order)
        files["report.html"] = lambda path: write_report(path, facts)
        files["README.md"] = lambda path: write_card(path, facts)
    if fsio.is_remote(out_dir):
        publish_to_url(out_dir, files)
    else:
        publish(out_dir, files)


def register_kept(catalog: Catalog, run_id: str, final: StageOutput, batch: int = 5000) -> None:
    """Kept records and their provenance into the catalog, in batches (flat memory)."""
    rows = (
        {
            "record_id": str(r.get("id", "")),
            "parent_id": r.get("problem_id") or r.get("seed_id"),
            "provenance": r.get("provenance") or {},
        }
        for r in final.kept_rows()
    )
    while chunk := list(islice(rows, batch)):
        catalog.register_records(run_id, "published", chunk)
