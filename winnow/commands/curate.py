"""`winnow curate STEP`: run one curation step as a filter over JSON Lines.

    winnow curate semantic --field problem --threshold 0.9 --rejected dup.jsonl \\
        < in.jsonl > kept.jsonl

Kept rows go to stdout unchanged, in input order; rejected ones to ``--rejected`` as
``{"id", "stage", "reason", "detail", "record"}`` (for dedup, ``detail.duplicate_of`` is
the id of the kept row). A summary goes to stderr. kept + rejected = input, always.
Rows without an ``id`` get their line number as id (a dedup reason must name a row).

Scoring steps read chat rows (``{"id", "messages", ...}``) and write the score into
``metadata`` of each row (kept rows carry it to stdout)::

    winnow curate ifd --max-ifd 1 --threshold 0.5 --rejected easy.jsonl < chat.jsonl

scores IFD = PPL(answer | instruction) / PPL(answer) with the scorer model
(``--provider/--model/--base-url``; default the embedded model), journaled, and keeps the
most difficult half of the rows whose instruction helps (IFD < 1), and::

    winnow curate utility --dev verified.jsonl --threshold 0.25 < chat.jsonl

keeps the quarter of rows that, shown as a one-shot demonstration, most lower the scorer's
loss on the verified dev examples (``metadata.utility``). Instead of discarding,
``winnow curate weight --score-field metadata.utility`` keeps every scored row with a
rank-normalised ``metadata.weight`` in (0, 1] (``tasks.curation.weights``).
Exit 2 on malformed input or options.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import typer

from winnow.console import err, fail


class Step(StrEnum):
    exact = "exact"
    minhash = "minhash"
    semantic = "semantic"
    phrases = "phrases"
    contamination = "contamination"
    balance = "balance"
    quantile = "quantile"
    ifd = "ifd"
    utility = "utility"
    weight = "weight"


def _read_rows(stream: TextIO) -> Iterator[dict[str, Any]]:
    from tasks.core.jsonl import InputError, numbered_rows

    try:
        yield from _with_ids(numbered_rows(stream))
    except InputError as exc:
        raise fail(str(exc)) from None


def _with_ids(rows: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for number, row in rows:
        if "id" not in row or row["id"] in (None, ""):
            row["id"] = str(number)
        yield row


def _parse_target(spec: str | None) -> dict[str, float] | None:
    if not spec:
        return None
    target = {}
    for part in spec.split(","):
        name, sep, share = part.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            target[name.strip()] = float(share)
        except ValueError:
            raise fail(f"--target: expected CLASS=SHARE[,CLASS=SHARE...], got {part!r}") from None
    return target


def build(step: Step, fields: list[str], **opt: Any) -> tuple[Callable[..., Any], Any, bool]:
    """The stage function, its config and whether it is a whole-dataset step."""
    from pydantic import ValidationError

    from tasks import curation as c

    t = opt["threshold"]
    if not fields and step not in (Step.ifd, Step.utility, Step.weight, Step.quantile):
        raise fail(f"{step.value} needs --field")
    try:
        if step is Step.ifd:
            return _ifd(fields, t, opt)
        if step is Step.utility:
            return _utility(fields, t, opt)
        if step is Step.exact:
            cfg: Any = c.ExactDedupConfig(fields=fields, strip_comments=opt["strip_comments"])
            return c.exact_dedup, cfg, True
        if step is Step.minhash:
            cfg = c.MinHashDedupConfig(fields=fields, **({"threshold": t} if t is not None else {}))
            return c.minhash_dedup, cfg, True
        if step is Step.semantic:
            cfg = c.SemanticDedupConfig(
                fields=fields,
                score_field=opt["score_field"],
                difficulty_field=opt["difficulty_field"],
                **({"threshold": t} if t is not None else {}),
            )
            return c.semantic_dedup_stage().fn, cfg, True
        if step is Step.phrases:
            extra = {"phrases": opt["phrases"]} if opt["phrases"] else {}
            cfg = c.PhraseBalanceConfig(
                fields=fields,
                score_field=opt["score_field"],
                **extra,
                **({"max_share": t} if t is not None else {}),
            )
            return c.phrase_balance, cfg, True
        if step is Step.contamination:
            if not opt["against"]:
                raise fail("contamination needs --against DIR (a folder of eval sets)")
            cfg = c.ContaminationConfig(fields=fields, against=str(opt["against"]), n=opt["ngram"])
            return c.contamination_batch, cfg, False
        if step is Step.balance:
            if len(fields) != 1:
                raise fail("balance takes exactly one --field (the class column)")
            cfg = c.ClassBalanceConfig(
                column=fields[0],
                target=_parse_target(opt["target"]),
                score_field=opt["score_field"],
            )
            return c.class_balance, cfg, True
        if step is Step.weight:
            from tasks.curation.weights import WeightConfig, weight_by_score

            if not opt["score_field"]:
                raise fail("weight needs --score-field")
            cfg = WeightConfig(
                score_field=opt["score_field"], higher_is_better=not opt["lower_is_better"]
            )
            return weight_by_score, cfg, True
        if not opt["score_field"]:
            raise fail("quantile needs --score-field")
        cfg = c.QualityQuantileConfig(
            score_field=opt["score_field"], **({"fraction": t} if t is not None else {})
        )
        return c.quality_quantile, cfg, True
    except (ValidationError, c.ContaminationError) as exc:
        raise fail(f"{step.value}: {exc}") from None


def _scorer(opt: dict[str, Any]) -> Any:
    from tasks.llm.base import ProviderSpec

    return ProviderSpec(
        kind=opt["provider"], model=opt["model"] or "", base_url=opt["base_url"] or None
    )


def _ifd(fields: list[str], t: float | None, opt: dict[str, Any]) -> tuple[Any, Any, bool]:
    """Score (in batches, journaled) then select over every row: one whole-data step."""
    from tasks.curation.ifd import IFDConfig, ifd_score_batch, ifd_select

    if fields and len(fields) != 2:
        raise fail("ifd takes no --field (chat rows) or two: --field INSTRUCTION --field ANSWER")
    bounds = {k: opt[k] for k in ("min_ifd", "max_ifd") if opt[k] is not None}
    config = IFDConfig(
        scorer=_scorer(opt),
        top_fraction=t,
        instruction_field=fields[0] if fields else None,
        answer_field=fields[1] if fields else None,
        **bounds,
    )
    return _score_then_select(ifd_score_batch, ifd_select), config, True


def _utility(fields: list[str], t: float | None, opt: dict[str, Any]) -> tuple[Any, Any, bool]:
    from tasks.core.jsonl import InputError, numbered_rows
    from tasks.curation.ifd import NotScorable
    from tasks.curation.utility import (
        UtilityConfig,
        load_dev,
        utility_score_batch,
        utility_select,
    )

    if not opt["dev"]:
        raise fail("utility needs --dev FILE (verified chat rows)")
    if fields and len(fields) != 2:
        raise fail("utility takes no --field (chat rows) or two: INSTRUCTION and ANSWER")
    try:
        with opt["dev"].open(encoding="utf-8") as stream:
            dev = load_dev([row for _, row in numbered_rows(stream)])
    except (OSError, InputError, NotScorable) as exc:
        raise fail(f"--dev {opt['dev']}: {exc}") from None
    if not dev:
        raise fail(f"--dev {opt['dev']}: no rows")
    extra = {"min_utility": opt["min_utility"]} if opt["min_utility"] is not None else {}
    config = UtilityConfig(
        dev=dev,
        scorer=_scorer(opt),
        dev_sample=opt["dev_sample"],
        top_fraction=t,
        instruction_field=fields[0] if fields else None,
        answer_field=fields[1] if fields else None,
        **extra,
    )
    return _score_then_select(utility_score_batch, utility_select), config, True


def _score_then_select(score: Callable[..., Any], select: Callable[..., Any]) -> Callable[..., Any]:
    """A whole-data step from a batch scoring step and a global selection: rows are
    scored 64 at a time; the ones that could not be scored are rejected at once."""

    def step(rows: Iterator[dict[str, Any]], config: Any, ctx: Any) -> Iterator[Any]:
        scored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            result = score(batch, config, ctx)
            scored.extend(result.kept)
            failed.extend(result.rejected)

        for row in rows:
            batch.append(row)
            if len(batch) >= 64:
                flush()
                batch = []
        if batch:
            flush()
        yield from select(iter(scored), config, ctx)
        for rej in failed:
            yield "rejected", rej

    return step


def run_step(
    fn: Callable[..., Any], config: Any, whole: bool, rows: Iterator[dict[str, Any]], stage: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Run a stage function outside any flow: no shards, no catalog, no Prefect."""
    from tasks.pipeline.stage import RunInfo, StageContext

    ctx = StageContext(run=RunInfo(run_id="cli", recipe="curate"), stage=stage)
    if whole:
        yield from fn(rows, config, ctx)
        return
    batch: list[dict[str, Any]] = []

    def flush() -> Iterator[tuple[str, dict[str, Any]]]:
        result = fn(batch, config, ctx)
        for row in result.kept:
            yield "kept", row
        for rej in result.rejected:
            yield "rejected", rej

    for row in rows:
        batch.append(row)
        if len(batch) >= 1000:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def curate(
    step: Step = typer.Argument(..., help="Which curation step to run."),
    field: list[str] = typer.Option(
        [],
        "--field",
        "-f",
        help="Field(s) to look at (repeat for several); balance: column; ifd: none for "
        "chat rows, or INSTRUCTION and ANSWER.",
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        "-t",
        help="minhash: Jaccard (0.8); semantic: cosine (0.9); phrases: max share of "
        "output per phrase (0.05); quantile: fraction kept (0.25); ifd: fraction kept, "
        "most difficult first (all in range).",
    ),
    provider: str = typer.Option(
        "local", help="ifd, utility: the scorer's provider (local: the embedded model)."
    ),
    model: str = typer.Option(
        "", help="ifd, utility: the scorer model (default: the embedded one)."
    ),
    base_url: str | None = typer.Option(None, help="ifd, utility: the scorer's server URL."),
    dev: Path | None = typer.Option(None, help="utility: verified chat rows (the dev set)."),
    dev_sample: int = typer.Option(8, min=1, help="utility: dev examples tried per row."),
    min_utility: float | None = typer.Option(
        None, help="utility: keep rows whose utility is above this (0: helps at all)."
    ),
    lower_is_better: bool = typer.Option(
        False, help="weight: a lower score is better (e.g. a perplexity)."
    ),
    min_ifd: float | None = typer.Option(None, help="ifd: keep IFD at least this (0)."),
    max_ifd: float | None = typer.Option(
        None, help="ifd: keep IFD below this (1: at or above, the instruction does not help)."
    ),
    against: Path | None = typer.Option(None, help="contamination: folder of eval sets."),
    ngram: int = typer.Option(13, help="contamination: n-gram length in words."),
    rejected: Path | None = typer.Option(None, help="Where rejected rows go (JSON Lines)."),
    score_field: str | None = typer.Option(
        None,
        help="Quality score, dotted (judge.score, metadata.ifd): semantic, phrases, balance, "
        "quantile, weight.",
    ),
    difficulty_field: str | None = typer.Option(None, help="semantic: multiplies the score."),
    phrase: list[str] = typer.Option([], "--phrase", help="phrases: replace the default list."),
    target: str | None = typer.Option(None, help="balance: target mix, e.g. easy=1,hard=2."),
    strip_comments: bool = typer.Option(False, help="exact: ignore '#' comments."),
) -> None:
    """Run one curation step over JSON Lines: stdin in, kept rows to stdout."""
    fn, config, whole = build(
        step,
        field,
        threshold=threshold,
        against=against,
        ngram=ngram,
        score_field=score_field,
        difficulty_field=difficulty_field,
        phrases=phrase,
        target=target,
        strip_comments=strip_comments,
        provider=provider,
        model=model,
        base_url=base_url,
        min_ifd=min_ifd,
        max_ifd=max_ifd,
        dev=dev,
        dev_sample=dev_sample,
        min_utility=min_utility,
        lower_is_better=lower_is_better,
    )
    from tasks.curation.balance import label

    counts = {"in": 0, "kept": 0, "rejected": 0}
    classes_in: Counter[str] = Counter()
    classes_out: Counter[str] = Counter()
    column = field[0] if step is Step.balance else None

    def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            counts["in"] += 1
            if column:
                classes_in[label(row, column)] += 1
            yield row

    from tasks.llm.base import ConfigError

    sink = rejected.open("w", encoding="utf-8") if rejected else None
    try:
        for kind, row in run_step(fn, config, whole, counted(_read_rows(sys.stdin)), step.value):
            counts[kind] += 1
            if kind == "kept":
                if column:
                    classes_out[label(row, column)] += 1
                sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            elif sink is not None:
                line = {
                    "id": row["record_id"],
                    **{k: v for k, v in row.items() if k != "record_id"},
                }
                sink.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    except ConfigError as exc:
        raise fail(f"{step.value}: {exc}") from None
    finally:
        if sink is not None:
            sink.close()
    sys.stdout.flush()
    if column:
        _print_distribution(column, classes_in, classes_out, getattr(config, "target", None))
    where = f" → {rejected}" if rejected else " (not saved: pass --rejected FILE)"
    err.print(
        f"{step.value}: {counts['in']} in, {counts['kept']} kept, "
        f"{counts['rejected']} rejected{where}",
        highlight=False,
    )


def _print_distribution(
    column: str, before: Counter[str], after: Counter[str], target: dict[str, float] | None
) -> None:
    from rich.table import Table

    table = Table(title=f"Distribution of {column}", title_justify="left")
    for name in ("class", "in", "share in", "kept", "share kept", "target"):
        table.add_column(name, justify="left" if name == "class" else "right")
    n_in, n_out = sum(before.values()) or 1, sum(after.values()) or 1
    for name in sorted(set(before) | set(target or {}), key=lambda k: (-before[k], k)):
        table.add_row(
            name,
            str(before[name]),
            f"{before[name] / n_in:.1%}",
            str(after[name]),
            f"{after[name] / n_out:.1%}",
            "" if target is None else f"{target.get(name, 0.0):.1%}",
        )
    err.print(table)


def register(app: typer.Typer) -> None:
    app.command("curate")(curate)
