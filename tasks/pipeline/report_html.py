"""The HTML of ``report.html``: one file, inline CSS and SVG, no script, no network.

Examples are hostile text (generated code, model answers, user inputs): every value goes
through ``html.escape`` or Pygments (which escapes), and the page's Content-Security-Policy
allows no script and no request at all, so even a value that slipped through could run
nothing and fetch nothing. Code is highlighted with Pygments (a dependency of ``rich``),
dialogs are drawn as dialogs.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from tasks.pipeline.facts import RunFacts
from tasks.pipeline.feedback_view import HOW_TO_READ, feedback_table
from tasks.pipeline.report_content import Pair, ReportContent

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
FENCE = re.compile(r"```([\w+#.-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)
CODE_FIELDS = {"solution", "program", "code", "tests", "reference_tests", "php", "python"}
SKIP_FIELDS = {"id", "provenance", "messages", "metadata"}
MAX_TEXT = 20_000  # characters of one value shown; the rest is cut, with a note
MAX_GROUPS = 30  # reasons shown per stage, most frequent first; the rest in one line

CSS = """
:root{--ok:#2e7d32;--bad:#c62828;--muted:#667;--line:#dde;--bg:#f7f7fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d24;
background:#fff}
header{background:#1d1d24;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:20px}header .sub{color:#bbc;font-size:13px}
main{padding:8px 28px 40px;max-width:1400px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin-top:16px}
.tile{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px 14px;
min-width:120px}.tile b{display:block;font-size:20px}.tile span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:4px 10px;border-bottom:1px solid
var(--line);text-align:left;vertical-align:top}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:8px;background:#7986cb;border-radius:2px}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}
.muted{color:var(--muted)}
details{margin:4px 0}summary{cursor:pointer}
.pairs{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.col-head{font-weight:600;padding:4px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:10px;background:#fff;min-width:0}
.card.kept{border-left:4px solid var(--ok)}.card.rejected{border-left:4px solid var(--bad)}
.card.empty{border-style:dashed;color:var(--muted)}
.same{grid-column:1/3;font-size:12px;color:var(--muted);margin:6px 0 -8px}
.reason{background:#fdecea;color:#7f1d1d;padding:4px 8px;border-radius:4px;margin-bottom:6px;
white-space:pre-wrap;word-break:break-word}
.msg{border-radius:8px;padding:6px 10px;margin:6px 0;white-space:pre-wrap;
word-break:break-word}.msg .role{font-size:11px;text-transform:uppercase;color:var(--muted);
display:block;margin-bottom:2px}
.msg.user{background:#e8eaf6;margin-right:12%}.msg.assistant{background:#e8f5e9;margin-left:12%}
.msg.system{background:#fff8e1}.msg.tool{background:#f3e5f5}
.short{font-size:12px;margin:4px 0}.short .name{color:var(--muted)}
.field{margin:6px 0}.field .name{font-size:11px;text-transform:uppercase;color:var(--muted)}
.text{white-space:pre-wrap;word-break:break-word}
pre{margin:4px 0;overflow-x:auto;white-space:pre;background:var(--bg);padding:6px;
border-radius:4px;font-size:12.5px}
.hl pre{margin:4px 0}
svg text{font:12px system-ui,sans-serif}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT} more characters)"


def code(text: str, language: str = "python") -> str:
    try:
        lexer = get_lexer_by_name(language or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return highlight(_cut(text), lexer, HtmlFormatter(cssclass="hl"))


def _language(name: str, text: str) -> str:
    return "php" if "php" in name.lower() or "<?php" in text else "python"


def _looks_like_code(name: str, text: str) -> bool:
    if name in CODE_FIELDS:
        return True
    return bool(re.search(r"^(def |class |import |from \w+ import |<\?php)", text, re.M))


def rich_text(text: str) -> str:
    """Text with fenced code blocks highlighted, the rest escaped as is."""
    parts, last = [], 0
    text = _cut(text)
    for m in FENCE.finditer(text):
        if m.start() > last:
            parts.append(f'<div class="text">{esc(text[last : m.start()].strip(chr(10)))}</div>')
        parts.append(code(m.group(2), m.group(1) or "python"))
        last = m.end()
    if last < len(text):
        parts.append(f'<div class="text">{esc(text[last:].strip(chr(10)))}</div>')
    return "".join(parts)


def dialog(messages: list[Any]) -> str:
    out = []
    for m in messages:
        if not isinstance(m, dict):
            out.append(f'<div class="msg">{esc(m)}</div>')
            continue
        role = str(m.get("role", ""))
        content = m.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, indent=2, ensure_ascii=False, default=str)
        out.append(
            f'<div class="msg {esc(role)}"><span class="role">{esc(role)}</span>'
            f"{rich_text(content)}</div>"
        )
    return f'<div class="dialog">{"".join(out)}</div>'


def as_json(value: Any, label: str) -> str:
    text = _cut(json.dumps(value, indent=2, ensure_ascii=False, default=str))
    return f"<details><summary>{esc(label)}</summary><pre>{esc(text)}</pre></details>"


def fields(record: dict[str, Any]) -> str:
    """A record that is not a dialog: its text fields, code highlighted, the rest as JSON."""
    out, short, rest = [], [], {}
    for name, value in record.items():
        if name in SKIP_FIELDS or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if (
            isinstance(value, str | int | float)
            and len(str(value)) <= 60
            and "\n" not in str(value)
            and name not in CODE_FIELDS
        ):
            short.append(f"<span><span class=name>{esc(name)}</span> {esc(value)}</span>")
        elif isinstance(value, str) and value.strip():
            shown = (
                code(value, _language(name, value))
                if _looks_like_code(name, value)
                else f'<div class="text">{esc(_cut(value))}</div>'
            )
            out.append(f'<div class="field"><div class="name">{esc(name)}</div>{shown}</div>')
        elif value not in (None, "", [], {}):
            rest[name] = value
    if rest:
        out.append(as_json(rest, "other fields"))
    head = f'<div class="short">{" · ".join(short)}</div>' if short else ""
    return head + "".join(out)


def example(row: dict[str, Any]) -> str:
    """A published example: its dialog (or fields) and its metadata a click away."""
    parts = []
    if isinstance(row.get("messages"), list):
        parts.append(dialog(row["messages"]))
    else:
        parts.append(fields(row))
    if isinstance(row.get("metadata"), dict):
        parts.append(as_json(row["metadata"], "metadata"))
    if row.get("provenance"):
        parts.append(as_json(row["provenance"], "provenance"))
    return "".join(parts)


def rejected(row: dict[str, Any]) -> str:
    record = row.get("record") if isinstance(row.get("record"), dict) else {}
    parts = [
        f'<div class="reason"><b>{esc(row.get("stage", ""))}</b>: {esc(row.get("reason", ""))}'
        "</div>"
    ]
    parts.append(example(record) if record else "")
    if row.get("detail"):
        parts.append(as_json(row["detail"], "detail"))
    return "".join(parts)


# --------------------------------------------------------------------------- sections


def _money(x: float) -> str:
    return f"${x:,.4f}" if x < 100 else f"${x:,.2f}"


def tiles(facts: RunFacts) -> str:
    f = facts.funnel
    n_in, kept = facts.n_inputs, facts.kept
    cost = float(f.get("cost_usd") or 0.0)
    tokens = f.get("tokens") or {}
    wall = (facts.published_at - facts.started_at).total_seconds() if facts.started_at else None
    items = [
        ("inputs", n_in, "inputs"),
        ("kept", kept, "kept"),
        ("yield", f"{kept / n_in:.1%}" if n_in else "-", "yield"),
        ("llm-calls", f.get("llm_calls", 0), "LLM calls"),
        ("tokens", f"{tokens.get('prompt', 0):,} + {tokens.get('completion', 0):,}",
         "prompt + completion tokens"),
        ("cost", _money(cost), "cost"),
        ("cost-per-kept", _money(cost / kept) if kept else "-", "cost per kept example"),
        ("wall-time", f"{wall:.1f} s" if wall is not None else "-", "from start to publish"),
    ]  # fmt: skip
    cells = [f'<div class="tile" id="tile-{k}"><b>{esc(v)}</b><span>{esc(label)}</span></div>'
             for k, v, label in items]  # fmt: skip
    return f'<div class="tiles">{"".join(cells)}</div>'


def funnel_chart(stages: list[dict[str, Any]]) -> str:
    """Horizontal bars, one per stage: kept (green) then rejected (red), scaled to the
    largest stage's input."""
    label_w, bar_w, row_h, width = 170, 560, 30, 900
    top = max([s["n_in"] for s in stages] + [1])
    rows = []
    for i, s in enumerate(stages):
        y = 10 + i * row_h
        kept_w = bar_w * s["n_out"] / top
        rej_w = bar_w * s["n_rejected"] / top
        reused = " (reused)" if s.get("reused") else ""
        rows.append(
            f'<g class="stage" data-stage="{esc(s["stage"])}" data-in="{s["n_in"]}" '
            f'data-out="{s["n_out"]}" data-rejected="{s["n_rejected"]}">'
            f"<title>{esc(s['stage'])}: {s['n_in']} in, {s['n_out']} kept, "
            f"{s['n_rejected']} rejected{reused}</title>"
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{esc(s["stage"])}</text>'
            f'<rect class="bar-kept" x="{label_w}" y="{y + 4}" width="{kept_w:.1f}" '
            f'height="{row_h - 10}" fill="#43a047"/>'
            f'<rect class="bar-rejected" x="{label_w + kept_w:.1f}" y="{y + 4}" '
            f'width="{rej_w:.1f}" height="{row_h - 10}" fill="#e53935"/>'
            f'<text x="{label_w + kept_w + rej_w + 6:.1f}" y="{y + 17}">'
            f"{s['n_out']} kept · {s['n_rejected']} rejected</text></g>"
        )
    height = 20 + len(stages) * row_h
    return (
        f'<svg id="funnel-chart" role="img" aria-label="funnel" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(rows)}</svg>"
    )


def stage_table(facts: RunFacts) -> str:
    costs = facts.stage_costs()
    stages = facts.funnel.get("stages") or []
    slowest = max([s.get("seconds", 0) for s in stages] + [1e-9])
    kept = facts.kept
    head = (
        "<tr><th>stage</th><th class=n>in</th><th class=n>kept</th><th class=n>rejected</th>"
        "<th class=n>seconds</th><th></th><th class=n>LLM calls</th><th class=n>prompt tokens"
        "</th><th class=n>completion tokens</th><th class=n>mean latency</th>"
        "<th class=n>cost</th><th class=n>cost per kept example</th></tr>"
    )
    rows = []
    for s in stages:
        c = costs.get(s["stage"], {})
        latency = c.get("mean_latency_s")
        cost = float(c.get("cost_usd") or 0.0)
        rows.append(
            f'<tr data-stage="{esc(s["stage"])}"><td>{esc(s["stage"])}'
            f"{' <span class=muted>(reused)</span>' if s.get('reused') else ''}</td>"
            f'<td class="n n-in">{s["n_in"]}</td><td class="n n-out">{s["n_out"]}</td>'
            f'<td class="n n-rejected">{s["n_rejected"]}</td>'
            f'<td class="n">{s.get("seconds", 0):.2f}</td>'
            f'<td><span class="bar" style="width:{120 * s.get("seconds", 0) / slowest:.0f}px">'
            "</span></td>"
            f'<td class="n">{c.get("calls", 0)}</td><td class="n">{c.get("prompt_tokens", 0):,}'
            f'</td><td class="n">{c.get("completion_tokens", 0):,}</td>'
            f'<td class="n">{"-" if latency is None else f"{latency:.2f} s"}</td>'
            f'<td class="n">{_money(cost)}</td>'
            f'<td class="n">{_money(cost / kept) if kept else "-"}</td></tr>'
        )
    return f'<table id="stages">{head}{"".join(rows)}</table>'


def usage_table(facts: RunFacts) -> str:
    if not facts.usage:
        return '<p class="muted">No LLM call.</p>'
    head = (
        "<tr><th>stage</th><th>provider / model</th><th>prompt template</th><th>version</th>"
        "<th class=n>calls</th><th class=n>from journal</th><th class=n>cost</th></tr>"
    )
    rows = [
        f"<tr><td>{esc(u['stage'])}</td><td>{esc(u['provider'])} / {esc(u['model'])}</td>"
        f"<td>{esc(u['template'] or '-')}</td><td>{esc(u['template_version'] or '-')}</td>"
        f"<td class=n>{u['calls']}</td><td class=n>{u.get('cached_calls', 0)}</td>"
        f"<td class=n>{_money(float(u.get('cost_usd') or 0.0))}</td></tr>"
        for u in facts.usage
    ]
    return f'<table id="usage">{head}{"".join(rows)}</table>'


def reasons_section(content: ReportContent) -> str:
    if not content.reasons:
        return '<p class="muted">Nothing was rejected.</p>'
    out = []
    for stage, groups in content.reasons.items():
        total = sum(g.count for g in groups)
        out.append(f'<h3 data-stage="{esc(stage)}">{esc(stage)}: {total} rejected</h3>')
        for g in groups[:MAX_GROUPS]:
            examples = "".join(f'<div class="card rejected">{rejected(e)}</div>'
                               for e in g.examples)  # fmt: skip
            out.append(
                f'<details class="reason-group" data-stage="{esc(stage)}" data-count="{g.count}">'
                f'<summary><b class="count">{g.count}</b> × {esc(g.reason)}</summary>'
                f"{examples}</details>"
            )
        if len(groups) > MAX_GROUPS:
            rest = groups[MAX_GROUPS:]
            out.append(
                f'<p class="muted">and {sum(g.count for g in rest)} more in {len(rest)} other '
                "reasons: every one is in rejected.jsonl</p>"
            )
    return "".join(out)


def pairs_section(pairs: list[Pair]) -> str:
    if not pairs:
        return '<p class="muted">No example.</p>'
    cells = ['<div class="col-head">Kept</div><div class="col-head">Rejected</div>']
    for p in pairs:
        if p.same_input:
            cells.append(f'<div class="same">same input: {esc(p.same_input)}</div>')
        cells.append(
            f'<div class="card kept">{example(p.kept)}</div>'
            if p.kept is not None
            else '<div class="card empty">no kept example here</div>'
        )
        cells.append(
            f'<div class="card rejected">{rejected(p.rejected)}</div>'
            if p.rejected is not None
            else '<div class="card empty">no rejected example here</div>'
        )
    return f'<div class="pairs" id="examples">{"".join(cells)}</div>'


def gates_section(facts: RunFacts) -> str:
    if not facts.validations:
        return '<p class="muted">No suite ran.</p>'
    rows = []
    for v in facts.validations:
        ok = bool(v.get("success"))
        failures = v.get("details") or []
        more = as_json(failures, f"{len(failures)} failure(s)") if failures else ""
        rows.append(
            f'<tr class="gate" data-suite="{esc(v["suite"])}" data-success="{str(ok).lower()}">'
            f"<td>{esc(v['stage'])}</td><td>{esc(v['suite'])}</td><td>{esc(v['severity'])}</td>"
            f'<td class="{"ok" if ok else "bad"}">{"passed" if ok else "FAILED"}</td>'
            f"<td class=n>{v.get('n_failed') or 0} of {v.get('n_expectations') or 0}</td>"
            f"<td class=n>{float(v.get('duration_s') or 0.0):.2f} s</td><td>{more}</td></tr>"
        )
    head = (
        "<tr><th>after stage</th><th>suite</th><th>severity</th><th>result</th>"
        "<th class=n>expectations failed</th><th class=n>took</th><th></th></tr>"
    )
    return f'<table id="gates">{head}{"".join(rows)}</table>'


def feedback_section(feedback: dict[str, Any]) -> str:
    """Each judge criterion against the IFD and utility scores (``rubric_feedback``)."""
    head, rows = feedback_table(feedback)
    th = "".join(f"<th{'' if i == 0 else ' class=n'}>{esc(h)}</th>" for i, h in enumerate(head))
    body = []
    for row in rows:
        cells = "".join(
            f"<td{'' if i == 0 else ' class=n'}>{esc(c)}</td>" for i, c in enumerate(row)
        )
        body.append(f'<tr class="criterion" data-criterion="{esc(row[0])}">{cells}</tr>')
    return (
        f'<p class="muted">Judge stage <b>{esc(feedback.get("judge_stage", ""))}</b>: its '
        "rejections were scored by the same scorer as the kept rows (off the funnel; they "
        f"stay rejected). {esc(HOW_TO_READ)}</p>"
        f'<table id="rubric-feedback"><tr>{th}</tr>{"".join(body)}</table>'
    )


def render(facts: RunFacts, content: ReportContent) -> str:
    f = facts.funnel
    when = facts.published_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    started = f"started {facts.started_at:%Y-%m-%d %H:%M:%S} UTC · " if facts.started_at else ""
    models = ", ".join(facts.models()) or "no LLM"
    extra = {k: v for k, v in f.items() if k not in {
        "run_id", "recipe", "stages", "kept", "tokens", "llm_calls", "llm_calls_from_journal",
        "llm_sends", "cost_usd", "gates", "out", "rubric_feedback"}}  # fmt: skip
    feedback = f.get("rubric_feedback")
    shown_note = (
        f"{sum(p.kept is not None for p in content.pairs)} of {content.n_kept_rows} kept and "
        f"{sum(p.rejected is not None for p in content.pairs)} of {content.n_rejected_rows} "
        "rejected; a rejected example beside a kept one came from the same input when marked so."
    )
    body = [
        f"<header><h1>{esc(facts.recipe)} · {esc(facts.run_id)}</h1>"
        f'<div class="sub">{started}published {esc(when)} · models: {esc(models)}</div></header>',
        "<main>",
        tiles(facts),
        "<h2>Funnel</h2>",
        funnel_chart(f.get("stages") or []),
        "<h2>Stages: counts, time, tokens, cost</h2>",
        stage_table(facts),
        f'<p class="muted">{f.get("llm_calls_from_journal", 0)} of {f.get("llm_calls", 0)} '
        f"LLM calls answered from the journal (paid before), {f.get('llm_sends', 0)} sends "
        "in all (retries included).</p>",
        "<h2>Rejection reasons by stage</h2>",
        reasons_section(content),
        "<h2>Kept and rejected examples</h2>",
        f'<p class="muted">{esc(shown_note)}</p>',
        pairs_section(content.pairs),
        *(["<h2>Rubric feedback</h2>", feedback_section(feedback)] if feedback else []),
        "<h2>Gates</h2>",
        gates_section(facts),
        "<h2>Models and prompts</h2>",
        usage_table(facts),
        "<h2>Run</h2>",
        as_json(extra, "recipe figures") if extra else "",
        as_json(facts.made_with(), "parameters"),
        "</main>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(facts.recipe)} · {esc(facts.run_id)} · Winnow report</title>"
        f"<style>{CSS}{HtmlFormatter(style='friendly').get_style_defs('.hl')}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
