"""report.html in Debian's Chromium (never a downloaded browser), as a person opens it:
a real code-sft run against the scripted test LLM server (a test double) publishes it;
the page renders with no request but its own file, the funnel chart is drawn with the
numbers of funnel.json, a rejection reason's examples open with a click, and the run's
Prefect artifacts link to it. A hostile example (a <script>, an onerror) shows as text
and runs nothing. Screenshots go to ``test-artifacts/report/`` (kept by CI, ignored by
git)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.paths import SOURCE_ROOT
from tests.pipeline.published import HOSTILE, publish_folder
from winnow.testing.llm_server import LLMTestServer
from winnow.testing.scenarios import scenario_for

SHOTS = SOURCE_ROOT / "test-artifacts" / "report"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def open_page(pw, path: Path):
    """The page, and every request it made (a self-contained page makes one: itself)."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return browser, page, requests, errors


def needs_chromium() -> None:
    pytest.importorskip("playwright")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: infra/setup.sh --for test installs it")
    SHOTS.mkdir(parents=True, exist_ok=True)


@pytest.mark.slow
def test_the_report_of_a_real_run_in_chromium(tmp_path, prefect_harness) -> None:
    needs_chromium()
    from playwright.sync_api import sync_playwright
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.registry import get_recipe

    recipe, scenario = get_recipe("code-sft"), scenario_for("code-sft")
    with LLMTestServer(scenario.script()) as server:
        params = recipe.params_model()(**scenario.params(tmp_path, server.base_url))
        summary = recipe.flow()(params)
    out = Path(params.out)
    report = out / "report.html"
    funnel = json.loads((out / "funnel.json").read_text())
    assert summary["run_id"] == funnel["run_id"]

    with sync_playwright() as pw:
        browser, page, requests, errors = open_page(pw, report)
        try:
            assert funnel["run_id"] in page.title()
            chart = page.locator("#funnel-chart")
            box = chart.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100  # drawn, not empty
            bars = page.locator("#funnel-chart g.stage")
            assert bars.count() == len(funnel["stages"])
            for i, s in enumerate(funnel["stages"]):
                bar = bars.nth(i)
                shown = {k: bar.get_attribute(f"data-{k}") for k in ("stage", "in", "out")}
                assert shown == {"stage": s["stage"], "in": str(s["n_in"]), "out": str(s["n_out"])}
                kept_w = float(bar.locator("rect.bar-kept").get_attribute("width"))
                assert (kept_w > 0) == (s["n_out"] > 0)
                row = page.locator(f'#stages tr[data-stage="{s["stage"]}"]')
                cells = [
                    row.locator(f"td.{c}").inner_text() for c in ("n-in", "n-out", "n-rejected")
                ]
                assert cells == [str(s["n_in"]), str(s["n_out"]), str(s["n_rejected"])]
            assert page.locator("#tile-kept b").inner_text() == str(funnel["kept"])
            gates = page.locator("#gates tr.gate")
            assert gates.count() == len(funnel["gates"])

            # the examples of a rejection reason are a click away
            group = page.locator("details.reason-group").first
            example = group.locator(".card.rejected").first
            assert not example.is_visible()
            group.locator("> summary").click()
            assert example.is_visible()
            assert page.locator("#examples .card.kept .msg.assistant").count() >= 1
            page.screenshot(path=str(SHOTS / "code-sft-report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [report.as_uri()] and errors == []

    with get_client(sync_client=True) as client:
        key = ArtifactFilter(key=ArtifactFilterKey(any_=["code-sft-report"]))
        links = client.read_artifacts(artifact_filter=key)
    assert any(f"({report.as_uri()})" in a.data for a in links), [a.data for a in links]


@pytest.mark.slow
def test_a_hostile_example_runs_nothing(tmp_path) -> None:
    needs_chromium()
    from playwright.sync_api import sync_playwright

    out = publish_folder(tmp_path / "out", with_catalog=False)
    with sync_playwright() as pw:
        browser, page, requests, errors = open_page(pw, out / "report.html")
        try:
            page.locator("details.reason-group > summary").last.click()
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("script").count() == 0 and page.locator("main img").count() == 0
            assert HOSTILE in page.locator("#examples").inner_text()
            assert page.locator(".hl").count() >= 1  # code highlighted
            page.screenshot(path=str(SHOTS / "hostile-example.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [(out / "report.html").as_uri()] and errors == []
