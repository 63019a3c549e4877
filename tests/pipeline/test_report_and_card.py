"""The report and the dataset card of a published folder, without a flow (the scripted
runs of every recipe check them again: tests/recipes/test_recipe_contract.py; the report
in Chromium: tests/ops/test_report_browser.py)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from tasks.pipeline.card import size_category
from tasks.pipeline.report_content import OTHER_REASONS, collect
from tasks.store.hf_features import FeatureInference, merge, type_of
from tests.pipeline.published import HOSTILE, kept_rows, publish_folder, rejected_rows


def front_matter(readme: Path) -> dict:
    match = re.match(r"\A---\n(.*?)\n---\n", readme.read_text(), re.S)
    assert match, "the card has no YAML header"
    return yaml.safe_load(match.group(1))


# --------------------------------------------------------------------------- features


def test_features_merge_as_datasets_reads_them() -> None:
    assert merge(type_of(1), type_of(2.5)) == ("float64",)
    assert merge(type_of(None), type_of("a")) == ("string",)
    assert merge(type_of("a"), type_of({"x": 1})) == ("json",)
    assert merge(type_of(True), type_of(1)) == ("json",)
    assert type_of({}) == ("json",)
    assert merge(type_of([]), type_of(["a"])) == ("list", ("string",))
    assert merge(type_of({"a": 1}), type_of({"b": "x"})) == (
        "struct",
        {"a": ("int64",), "b": ("string",)},
    )


def test_features_of_uniform_rows_are_those_datasets_infers() -> None:
    datasets = pytest.importorskip("datasets")
    rows = [
        {"messages": [{"role": "user", "content": "hi"}], "tags": ["a"], "n": 1,
         "meta": {"score": 0.5, "ok": True, "nested": [[1, 2]], "votes": [{"v": "yes"}]}},
    ]  # fmt: skip
    inference = FeatureInference()
    for r in rows:
        inference.add(r)
    expected = datasets.Features.from_arrow_schema(pa.Table.from_pylist(rows).schema)
    assert inference.features() == expected._to_yaml_list()


# --------------------------------------------------------------------------- card


def test_the_card_loads_with_datasets_and_no_argument(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = publish_folder(tmp_path / "out", with_catalog=False)
    head = front_matter(out / "README.md")
    assert head["license"] == "apache-2.0" and head["language"] == ["en", "fr"]
    assert head["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in head["configs"]] == ["default", "rejected", "preferences"]
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "dataset.jsonl"}]

    kept = datasets.load_dataset(str(out))  # no argument: the default config
    assert list(kept) == ["train"]
    rows = list(kept["train"])
    written = kept_rows()
    assert [r["messages"] for r in rows] == [r["messages"] for r in written]
    assert [r["metadata"]["answer"] for r in rows] == [12, 12, "twelve"]  # json keeps both
    assert [r["metadata"]["score"] for r in rows] == [0.5, 1.0, 0.5]
    assert rows[0]["metadata"]["judge"] is None
    assert rows[1]["metadata"]["judge"] == {"verdict": "pass", "votes": [1, 1, 0]}
    rejected = datasets.load_dataset(str(out), "rejected")["train"]
    assert [r["reason"] for r in rejected] == [r["reason"] for r in rejected_rows()]
    assert len(datasets.load_dataset(str(out), "preferences")["train"]) == 1


def test_the_card_says_how_the_data_was_made(tmp_path: Path) -> None:
    out = publish_folder(tmp_path / "out", with_catalog=False)
    text = (out / "README.md").read_text()
    body = text.split("\n---\n", 1)[1]
    for needed in [
        "code-sft", "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5",  # recipe, models
        "| solutions | openai | gpt-4o-mini | code_sft/solution | 3 | 9 |",  # prompt + version
        "| execute | 9 | 4 | 5 | 2.25 |",  # the funnel
        "| judge | code_sft.kept | warning | FAILED | 1 of 3 |",  # verification
        "2026-01-01 00:05 UTC",  # the date
        '"n_problems": 9',  # the parameters...
    ]:  # fmt: skip
        assert needed in body, needed
    assert "10.0.0.7" not in text  # ...but not where it ran


@pytest.mark.parametrize(
    ("n", "category"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M")]
)
def test_size_categories(n: int, category: str) -> None:
    assert size_category(n) == category


# --------------------------------------------------------------------------- report


class Text(HTMLParser):
    """The text a browser would show, and every tag it would build."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_report_escapes_hostile_examples(tmp_path: Path) -> None:
    out = publish_folder(tmp_path / "out", with_catalog=False)
    page = (out / "report.html").read_text()
    parsed = Text()
    parsed.feed(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert "onerror" not in page.replace("onerror=&quot;", "")  # only escaped, as text
    assert HOSTILE in "".join(parsed.text)  # shown, as text
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing fetched


def test_the_report_counts_reasons_and_pairs_examples() -> None:
    content = collect(kept_rows(), rejected_rows(), per_reason=2)
    execute = content.reasons["execute"]
    assert [(g.reason, g.count) for g in execute] == [("AssertionError: assert add(1, 1) == 3", 5)]
    assert len(execute[0].examples) == 2
    assert content.reasons["judge"][0].count == 1
    # p1's kept example sits beside p1's rejected candidate
    paired = [p for p in content.pairs if p.same_input]
    assert [(p.kept["id"], p.rejected["id"]) for p in paired] == [("k1", "r0")]
    assert (content.n_kept_rows, content.n_rejected_rows) == (3, 6)


def test_a_reason_per_row_is_counted_without_keeping_them_all() -> None:
    rows = [{"stage": "s", "reason": f"r{i}", "record": {}} for i in range(50)]
    content = collect([], rows, max_reasons=10)
    groups = content.reasons["s"]
    assert sum(g.count for g in groups) == 50
    assert len(groups) == 11 and groups[0].reason == OTHER_REASONS and groups[0].count == 40


def test_the_report_numbers_are_the_funnel(tmp_path: Path) -> None:
    out = publish_folder(tmp_path / "out", with_catalog=False)
    page = (out / "report.html").read_text()
    funnel = json.loads((out / "funnel.json").read_text())
    for s in funnel["stages"]:
        bar = f'data-stage="{s["stage"]}" data-in="{s["n_in"]}" data-out="{s["n_out"]}" '
        assert bar + f'data-rejected="{s["n_rejected"]}"' in page
    assert 'id="tile-kept"><b>3</b>' in page and "$0.0041" in page  # cost per kept example
    assert 'id="tile-wall-time"><b>300.0 s</b>' in page  # started 00:00, published 00:05


def test_the_report_shows_the_most_frequent_reasons_and_counts_the_rest() -> None:
    from tasks.pipeline.report_html import MAX_GROUPS, render
    from tests.pipeline.published import facts

    rows = [{"stage": "execute", "reason": f"computed {i} but stated 13", "record": {}}
            for i in range(MAX_GROUPS + 5)]  # fmt: skip
    rows += [{"stage": "execute", "reason": "timed out", "record": {}}] * 3
    page = render(facts(), collect([], rows))
    assert page.index('<b class="count">3</b> × timed out') < page.index("computed 0 but")
    assert page.count('class="reason-group"') == MAX_GROUPS
    assert "and 6 more in 6 other reasons" in page
