"""The dataset card: the ``README.md`` of a published dataset, as the Hugging Face Hub
reads it.

Its YAML header names the files as configs and splits (``default``: the kept examples,
``rejected`` and ``preferences`` where the run wrote them), declares each config's
features (inferred from every row, ``tasks.store.hf_features``, so ``datasets`` and the
Hub's viewer read varied metadata in one schema), the size category, the license and the
languages. So ``datasets.load_dataset(folder_or_repo)`` loads the kept examples with no
argument. Its body says how the data was made: the recipe and its parameters, the
models and the prompt templates with their versions, the funnel, the gates passed, the
tokens and cost, the date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tasks.pipeline.facts import RunFacts
from tasks.store.hf_features import jsonl_features

# config name -> (file, what it holds); the first one present is the default config
CONFIGS: list[tuple[str, str, str]] = [
    ("default", "dataset.jsonl", "the kept examples: `messages` (chat format) and `metadata`"),
    ("rejected", "rejected.jsonl", "every candidate not kept: `stage`, `reason`, `record`"),
    ("preferences", "preferences.jsonl", "DPO pairs: `prompt`, `chosen`, `rejected`"),
]

SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def size_category(n: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1T" if n >= 10**12 else "1B<n<10B"


def header(folder: Path, facts: RunFacts) -> dict[str, Any]:
    """The YAML front matter, from the files in ``folder``."""
    configs: list[dict[str, Any]] = []
    infos: list[dict[str, Any]] = []
    for name, file, _ in CONFIGS:
        path = folder / file
        if not path.is_file():
            continue
        features, rows = jsonl_features(path)
        if name != "default" and rows == 0:
            continue  # an empty extra file makes no config
        configs.append({"config_name": name, "data_files": [{"split": "train", "path": file}]})
        size = path.stat().st_size
        info: dict[str, Any] = {"config_name": name}
        if features:
            info["features"] = features
        info["splits"] = [{"name": "train", "num_bytes": size, "num_examples": rows}]
        info["download_size"] = size
        info["dataset_size"] = size
        infos.append(info)
    return {
        "pretty_name": f"Winnow {facts.recipe} ({facts.run_id})",
        "license": facts.card.license,
        "language": facts.card.language,
        "size_categories": [size_category(facts.kept)],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "winnow", facts.recipe],
        "configs": configs,
        "dataset_info": infos,
    }


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return lines


def body(facts: RunFacts, configs: list[dict[str, Any]]) -> str:
    when = facts.published_at.strftime("%Y-%m-%d %H:%M UTC")
    kept, n_in = facts.kept, facts.n_inputs
    share = f" ({kept / n_in:.0%})" if n_in else ""
    md = [
        f"# {facts.recipe}: synthetic data made by Winnow",
        "",
        f"Made by the Winnow recipe `{facts.recipe}` "
        f"in run `{facts.run_id}`, published {when}: **{kept}** examples kept of "
        f"{n_in} candidates{share}. Every kept example passed every stage below; every "
        "candidate that did not is in `rejected.jsonl` with the stage and the reason.",
        "",
        "## Load it",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'kept = load_dataset("<this repo or folder>")["train"]',
    ]
    names = [c["config_name"] for c in configs]
    for name in names[1:]:
        md.append(f'{name} = load_dataset("<this repo or folder>", "{name}")["train"]')
    md += ["```", "", "| config | file | rows | what |", "|---|---|---:|---|"]
    described = {n: (f, what) for n, f, what in CONFIGS}
    for c in configs:
        file, what = described[c["config_name"]]
        md.append(f"| `{c['config_name']}` | `{file}` | {c.get('rows', '')} | {what} |")
    md += [
        "",
        "`funnel.json` counts every stage, `report.html` shows the run (open it in a "
        "browser), `manifest.json` gives each file's size and sha256.",
        "",
        "## How it was made",
        "",
        f"- Recipe: `{facts.recipe}` ({len(facts.funnel.get('stages') or [])} stages)",
        f"- Models: {', '.join(f'`{m}`' for m in facts.models()) or 'none called'}",
        f"- Date: {when}"
        + (
            f" (run started {facts.started_at:%Y-%m-%d %H:%M} UTC)" if facts.started_at else ""
        ),  # fmt: skip
        "",
        "Prompts, by stage (a template's wording never changes within a version):",
        "",
    ]
    md += _table(
        ["stage", "provider", "model", "prompt template", "version", "calls"],
        [
            [u["stage"], u["provider"], u["model"], u["template"] or "-",
             u["template_version"] or "-", u["calls"]]
            for u in facts.usage
        ],
    ) if facts.usage else ["(no LLM call)"]  # fmt: skip
    md += ["", "Parameters of the run:", "", "```json"]
    md += [json.dumps(facts.made_with(), indent=2, ensure_ascii=False, default=str), "```", ""]
    md += ["## Funnel", ""]
    md += _table(
        ["stage", "in", "kept", "rejected", "seconds"],
        [[s["stage"], s["n_in"], s["n_out"], s["n_rejected"], s.get("seconds", "")]
         for s in facts.funnel.get("stages") or []],
    )  # fmt: skip
    md += ["", "## Verification", ""]
    if facts.validations:
        md.append("Great Expectations suites checked between stages:")
        md.append("")
        md += _table(
            ["after stage", "suite", "severity", "result", "expectations failed"],
            [[v["stage"], v["suite"], v["severity"], "passed" if v["success"] else "FAILED",
              f"{v.get('n_failed') or 0} of {v.get('n_expectations') or 0}"]
             for v in facts.validations],
        )  # fmt: skip
    else:
        md.append("No suite ran.")
    tokens = facts.funnel.get("tokens") or {}
    md += [
        "",
        "## Cost",
        "",
        f"{facts.funnel.get('llm_calls', 0)} LLM calls, {tokens.get('prompt', 0)} prompt and "
        f"{tokens.get('completion', 0)} completion tokens, "
        f"${float(facts.funnel.get('cost_usd') or 0.0):.4f}"
        + (
            f" (${float(facts.funnel.get('cost_usd') or 0.0) / kept:.6f} per kept example)"
            if kept
            else ""
        )  # fmt: skip
        + ".",
        "",
    ]
    return "\n".join(md)


def dataset_card(folder: Path, facts: RunFacts) -> str:
    """The ``README.md`` of the dataset whose files are in ``folder``."""
    head = header(folder, facts)
    configs = [
        {**c, "rows": i["splits"][0]["num_examples"]}
        for c, i in zip(head["configs"], head["dataset_info"], strict=True)
    ]
    front = yaml.safe_dump(head, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{body(facts, configs)}"


def write_card(path: Path, facts: RunFacts) -> None:
    """Write the card at ``path``, reading the dataset files beside it."""
    path.write_text(dataset_card(path.parent, facts), encoding="utf-8")
