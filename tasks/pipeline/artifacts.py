"""Prefect artifacts: what a run shows on its page in the UI (funnel, costs, gates,
examples, a link to its report.html). Outside a flow run they are skipped, so stages
and tests need no server."""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Any

from tasks.core import progress
from tasks.pipeline.example_cards import example_markdown
from tasks.pipeline.summary import gate_markdown

log = logging.getLogger("winnow")

if TYPE_CHECKING:
    from tasks.gates.gx import GateResult
    from tasks.gates.suites import SuiteSpec


def flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def key(*parts: str) -> str:
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in raw)[:100]


def gate_key(recipe: str, suite: str) -> str:
    """``<recipe>-gate-<suite>``, the suite's name without its recipe's prefix."""
    head, _, rest = suite.partition(".")
    short = rest if rest and key(head) == key(recipe) else suite
    return key(recipe, "gate", short)


def gate(recipe: str, run_id: str, stage: str, result: GateResult, spec: SuiteSpec) -> None:
    """One gate as a readable artifact: every expectation with its result and observed
    value, the severity and the duration."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    md = gate_markdown(
        stage,
        result.model_dump(mode="json"),
        [e.model_dump(mode="json") for e in spec.expectations],
        spec.description,
    )
    create_markdown_artifact(key=gate_key(recipe, result.suite), markdown=md, description=run_id)


class SummaryArtifact:
    """The run's one summary, created first (the UI lists artifacts in the order they
    were made) saying the run has started, and rewritten in place as the run ends."""

    def __init__(self, recipe: str, run_id: str) -> None:
        self.recipe, self.run_id = recipe, run_id
        self.artifact_id: Any = None

    def open(self) -> SummaryArtifact:
        if flow_run_id() is None:
            return self
        from prefect.artifacts import create_markdown_artifact

        try:
            self.artifact_id = create_markdown_artifact(
                key=key(self.recipe, "summary"),
                markdown=f"### Run `{self.run_id}`: **running**\n\nThe summary comes as it ends.",
                description=f"Summary of {self.run_id}",
            )
        except Exception as exc:  # a summary is worth a warning, never a failed run
            log.warning("no summary artifact: %s", exc)
        return self

    def write(self, markdown: str, status: str) -> None:
        if self.artifact_id is None:
            return
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        try:
            with get_client(sync_client=True) as client:
                client.update_artifact(
                    self.artifact_id,
                    ArtifactUpdate(
                        data=markdown, description=f"Summary of {self.run_id}: {status}"
                    ),
                )
        except Exception as exc:
            log.warning("summary artifact not updated: %s", exc)


def examples(
    recipe: str, run_id: str, kept: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> None:
    """A few kept and rejected examples on the run's page in the UI."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    md = [f"### Examples from `{run_id}`", "", "#### Kept", ""]
    for i, row in enumerate(kept, 1):
        md += [f"##### Kept example {i}", "", example_markdown(row), "", "---", ""]
    if not kept:
        md.append("(none)")
    md += ["", "#### Rejected", ""]
    for r in rejected:
        md += [
            f"##### Rejected at `{r.get('stage')}`: {' '.join(str(r.get('reason')).split())[:300]}",
            "",
            example_markdown(r.get("record") or {}),
            "",
            "---",
            "",
        ]
    if not rejected:
        md.append("(none)")
    create_markdown_artifact(
        key=key(recipe, "examples"), markdown="\n".join(md), description=run_id
    )


def summary(recipe: str, run_id: str, funnel: list[dict[str, Any]], costs: dict[str, Any]) -> None:
    """The funnel as a table and the costs, once the run completed."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        key=key(recipe, "funnel"), table=funnel, description=f"Rejection funnel of {run_id}"
    )
    md = [
        f"### Costs of `{run_id}`",
        "",
        "| calls | from journal | prompt tokens | completion tokens | cost (USD) |",
        "|---:|---:|---:|---:|---:|",
        f"| {costs.get('calls', 0)} | {costs.get('cached_calls', 0)} | "
        f"{costs.get('prompt_tokens', 0)} | {costs.get('completion_tokens', 0)} | "
        f"{costs.get('cost_usd', 0.0):.4f} |",
    ]
    create_markdown_artifact(key=key(recipe, "costs"), markdown="\n".join(md), description=run_id)


def report_uri(location: str) -> str:
    """A link a browser opens: ``file://`` for a local path, the URL as is otherwise."""
    if "://" in location:
        return location
    from pathlib import Path

    return Path(location).absolute().as_uri()


def report(recipe: str, run_id: str, location: str) -> None:
    """A link to the run's ``report.html`` on its page in the UI."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_link_artifact

    create_link_artifact(
        key=key(recipe, "report"),
        link=report_uri(location),
        link_text=f"report.html of {run_id}",
        description=f"The report of {run_id}: funnel, rejection reasons, examples, costs, "
        f"gates, timings (open in a browser; also `winnow show {run_id} --open`). "
        f"Path: {location}",
    )


def progress_markdown(snapshot: dict[str, Any]) -> str:
    """A run's progress as the UI shows it: one row a stage, then what it kept and spent."""
    lines = [
        "| stage | done | rate | time left | kept |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in snapshot["stages"]:
        rate = s["rate_per_s"]
        left = "done" if s["finished"] else progress.duration(s["eta_s"])
        lines.append(
            f"| {s['stage']} | {s['done']}/{s['total']} | "
            f"{'-' if rate is None else f'{rate:.2f}/s'} | {left} | {s['kept']} |"
        )
    lines += [
        "",
        f"**kept so far: {snapshot['kept_so_far']}** · **cost so far: "
        f"${snapshot['cost_usd']:.4f}** ({snapshot['requests']} requests) · "
        f"{progress.duration(snapshot['elapsed_s'])} elapsed · the bar counts the rows "
        "of the stages started so far",
    ]
    return "\n".join(lines)


class LiveProgress(progress.Tally):
    """The run's progress as a live Prefect progress artifact, for runs watched in the UI
    (a deployment run has no terminal): created when the run starts, then updated by a
    thread of its own at most every ``every_s`` seconds and only when something moved,
    never once a row; a last update when the run ends. Outside a flow run, it only
    counts."""

    def __init__(self, recipe: str, run_id: str, every_s: float = 5.0) -> None:
        super().__init__()
        self.recipe, self.run_id, self.every_s = recipe, run_id, every_s
        self.artifact_id: Any = None
        self.writes = 0
        self._written = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> LiveProgress:
        if flow_run_id() is None:
            return self
        from prefect.artifacts import create_progress_artifact

        try:
            self.artifact_id = create_progress_artifact(
                progress=0.0,
                key=key(self.recipe, "progress"),
                description=f"Progress of `{self.run_id}`: starting",
            )
        except Exception as exc:  # progress is worth a warning, never a failed run
            log.warning("no live progress artifact: %s", exc)
            return self
        # the settings (the API's address) live in context variables: carry them over
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._loop,), name="winnow-progress", daemon=True
        )
        self._thread.start()
        return self

    def close(self, status: str) -> None:
        """Stop the writer; one last update saying how the run ended."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._write(final=status)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.changed != self._written:
                self._write()

    def _write(self, final: str | None = None) -> None:
        from prefect.artifacts import update_progress_artifact

        self._written = self.changed
        snap = self.snapshot()
        percent = 100.0 if final == "completed" else 100.0 * float(snap["fraction_done"])
        head = f"Run `{self.run_id}`" + (f": **{final}**" if final else "")
        try:
            update_progress_artifact(
                self.artifact_id,
                progress=round(min(100.0, percent), 1),
                description=head + "\n\n" + progress_markdown(snap),
            )
            self.writes += 1
        except Exception as exc:
            log.warning("live progress not updated: %s", exc)


def preview_markdown(doc: dict[str, Any]) -> str:
    """A preview's projection of the full run, and its funnel, as the UI shows them."""
    p = doc["projection"]

    def band(b: dict[str, Any], fmt: str = "{:,.0f}") -> str:
        high = "open (see notes)" if b["high"] is None else fmt.format(b["high"])
        return f"{fmt.format(b['estimate'])} | {fmt.format(b['low'])} | {high}"

    md = [
        f"### Preview of `{doc['run_id']}`: {p['preview_rows']} of {p['full_rows']} inputs",
        "",
        "Nothing was published. The full run, projected:",
        "",
        "| | estimate | low | high |",
        "|---|---:|---:|---:|",
        f"| requests | {band(p['requests'])} |",
        f"| prompt tokens | {band(p['prompt_tokens'])} |",
        f"| completion tokens | {band(p['completion_tokens'])} |",
        f"| cost (USD) | {band(p['cost_usd'], '{:,.4f}')} |",
        f"| wall time (s) | {band(p['wall_s'], '{:,.0f}')} |",
        f"| kept | {band(p['kept'])} |",
        "",
        "| provider | model | requests | cost (USD) |",
        "|---|---|---:|---:|",
    ]
    md += [
        f"| {m['provider']} | {m['model']} | {m['requests']['estimate']:,.0f} | "
        f"{m['cost_usd']['estimate']:,.4f} |"
        for m in p["by_model"]
    ]
    md += ["", "| stage | kept in preview | yield (95% band) | rows in (full run) |"]
    md += ["|---|---:|---:|---:|"]
    for s in p["stages"]:
        measured = "-" if s["yield_measured"] is None else f"{s['yield_measured']:.0%}"
        md.append(
            f"| {s['stage']} | {s['preview_kept']}/{s['preview_in']} | {measured} "
            f"({s['yield_low']:.0%}–{s['yield_high']:.0%}) | {s['rows_in']['estimate']:,.0f} |"
        )
    md += ["", "**What this preview cannot know:**", ""] + [f"- {n}" for n in p["notes"]]
    return "\n".join(md)


def preview(recipe: str, run_id: str, doc: dict[str, Any]) -> None:
    """A preview's projection and examples on its run's page in the UI."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=key(recipe, "preview"), markdown=preview_markdown(doc), description=run_id
    )
    examples(recipe, run_id, doc["examples"]["kept"], doc["examples"]["rejected"])
