"""The Prefect UI, driven like a user would with Debian's Chromium (never a downloaded
browser): a real Prefect server runs on 127.0.0.1 and `winnow serve`, pointed at it with
PREFECT_API_URL, serves the rag-qa deployment there. The test opens the UI, finds the
deployment, fills its run form (Run -> Custom run) with custom parameters pointing at the
scripted test LLM server, submits, waits for the run to complete and checks that its
funnel table artifact is shown; then the form's groups and titles (no "None" toggle, the
judge provider a dropdown like the provider), the run's summary artifact and a gate's
artifact, each with a screenshot.

The server asks for an auth string, as a team's does: the browser first meets the login
page and types it there; `winnow serve` is given it through PREFECT_API_AUTH_STRING.

Screenshots of every step go to ``test-artifacts/ui/`` (kept by CI, ignored by git).
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tasks.core.paths import SOURCE_ROOT
from tests.scripted_rag import REQUESTS, documents, script
from winnow.serving import auth
from winnow.serving.server import LocalServer
from winnow.testing.llm_server import LLMTestServer

SHOTS = SOURCE_ROOT / "test-artifacts" / "ui"
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


class UI:
    """The page plus a screenshot per step; a failed wait saves one before raising."""

    def __init__(self, page, base: str) -> None:
        self.page = page
        self.base = base
        self.step = 0

    def shot(self, name: str) -> Path:
        self.step += 1
        path = SHOTS / f"{self.step:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def expect(self, locator, what: str, timeout_s: float = 120) -> None:
        try:
            locator.first.wait_for(state="visible", timeout=timeout_s * 1000)
        except Exception as exc:
            path = self.shot("FAILED-" + re.sub(r"\W+", "-", what)[:40])
            raise AssertionError(
                f"UI: {what} not shown after {timeout_s:.0f} s; see {path}"
            ) from exc

    def field(self, label: str):
        """A form property by its label; only the innermost property with that header."""
        return self.page.locator(
            "xpath=//div[contains(concat(' ', @class, ' '), ' schema-form-property ')]"
            "[./div[contains(@class,'p-label__header')]"
            "//span[contains(@class,'schema-form-property__label')"
            f" and starts-with(normalize-space(), '{label}')]]"
        ).first

    def fill_text(self, label: str, value: str) -> None:
        box = self.field(label).locator("textarea, input").first
        box.fill(value)

    def open_list(self, label: str):
        """A select's list: focus it, open it (a click alone may only focus it)."""
        control = self.field(label).locator("button.p-select-button__control")
        control.click()
        options = self.page.get_by_role("option")
        if not options.first.is_visible():
            control.press("ArrowDown")
        self.expect(options, f"the options of {label}", 30)
        return control

    def choose(self, label: str, option: str) -> None:
        """A select: open its list, pick ``option``."""
        control = self.open_list(label)
        item = self.page.get_by_role("option", name=option, exact=True)
        item.first.click()
        from playwright.sync_api import expect

        expect(control).to_have_text(option)


@pytest.mark.slow
def test_run_a_recipe_from_the_ui_form(tmp_path, winnow_serve, monkeypatch) -> None:
    pytest.importorskip("playwright")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: infra/setup.sh --for test installs it")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    docs = documents(tmp_path / "docs")
    out = tmp_path / "ui-out"
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "server-home"))  # the server's own DB
    secret = f"winnow:{uuid.uuid4().hex}"
    monkeypatch.setenv(auth.CLIENT_ENV, secret)  # the server asks for it, serve sends it

    with (
        LLMTestServer(script("ui-test-model")) as llm,
        LocalServer(log=tmp_path / "server.log") as server,
    ):
        # the nightly schedule paused; a cron that cannot fire during the test instead
        served = winnow_serve(
            "--only", "rag-qa", "--no-schedules", "--cron", "rag-qa=17 4 13 * *",
            env={"PREFECT_API_URL": server.api_url},
        )  # fmt: skip
        assert served.wait_url(240) == server.api_url
        assert httpx.post(f"{server.api_url}/deployments/filter", json={}).status_code == 401
        (deployment,) = served.wait_deployments({"rag-qa"}, 240)

        # the scheduled deployment has scheduled runs waiting
        body = {
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }
        deadline, scheduled = time.monotonic() + 120, []
        while time.monotonic() < deadline and not scheduled:
            scheduled = served.api("POST", "/flow_runs/filter", json=body).json()
            time.sleep(1)
        assert scheduled, "the cron schedule created no scheduled run"

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            ui = UI(page, served.ui_url)
            try:
                login(ui, served.ui_url, secret)
                run_id, shown = drive(ui, served.ui_url, str(out), llm.base_url, str(docs))
            finally:
                ui.shot("last")
                browser.close()

        # the run got exactly what was typed into the form, and used the test server
        flow_run = served.api("GET", f"/flow_runs/{run_id}").json()
        params = flow_run["parameters"]["params"]
        assert params["provider"] == "openai-compatible"
        assert params["model"] == "ui-test-model"
        assert params["base_url"] == llm.base_url
        assert params["documents"] == str(docs)
        assert params["out"] == str(out)
        assert params["judges"] == 1
        assert params["judge_provider"] == "openai-compatible"
        # a field left empty is left out (the model's None applies), never sent as null
        assert None not in params.values(), params
        assert "judge_model" not in params and "preview" not in params
        assert flow_run["state_type"] == "COMPLETED"
        assert llm.stats.chat_requests == REQUESTS  # questions, answers, one vote each
        kept = (out / "dataset.jsonl").read_text().splitlines()
        assert len(kept) == 4
        # the table in the UI is the run's funnel
        funnel = json.loads((out / "funnel.json").read_text())["stages"]
        expected = [
            [s["stage"], str(s["n_in"]), str(s["n_out"]), str(s["n_rejected"])] for s in funnel
        ]
        assert [row[:4] for row in shown] == expected

        code, left = served.stop(signal.SIGTERM)
        assert code == 0, served.output()
        assert not left
        # a server winnow serve did not start is left running
        assert server.process.poll() is None
        served.api("GET", "/health")


def login(ui: UI, base: str, secret: str) -> None:
    """The login page a server with an auth string shows first; the string typed there."""
    page = ui.page
    page.goto(f"{base}/deployments", wait_until="networkidle")
    password = page.locator("input[type=password]")
    ui.expect(password, "the login page")
    ui.shot("login")
    password.first.fill(secret)
    page.get_by_role("button", name="Login").first.click()
    password.first.wait_for(state="hidden", timeout=60_000)


def drive(ui: UI, base: str, out: str, llm_url: str, docs: str) -> tuple[str, list[list[str]]]:
    """Deployments -> rag-qa -> Run -> Custom run -> fields -> Submit -> the run ->
    Completed -> Artifacts -> the funnel table. Returns the run's id and the table."""
    page = ui.page
    page.goto(f"{base}/deployments", wait_until="networkidle")
    link = page.locator("a[href*='/deployments/deployment/']", has_text="rag-qa")
    ui.expect(link, "the rag-qa deployment in the list")
    ui.shot("deployments")
    link.first.click()
    ui.expect(page.get_by_role("button", name="Run", exact=True), "the deployment's Run button")
    ui.expect(page.get_by_text("Scheduled", exact=True), "the next scheduled run")
    ui.shot("deployment")

    page.get_by_role("button", name="Run", exact=True).click()
    ui.expect(page.get_by_text("Custom run", exact=True), "the Custom run menu item")
    page.get_by_text("Custom run", exact=True).click()
    ui.expect(ui.field("Provider"), "the parameters form")
    ui.expect(page.get_by_text("generator provider"), "the field descriptions")
    check_form(ui)
    ui.shot("form-empty")

    run_name = f"ui-test-{uuid.uuid4().hex[:8]}"
    page.locator(".flow-run-name-input input").fill(run_name)
    ui.choose("Provider", "openai-compatible")
    ui.fill_text("Model", "ui-test-model")
    ui.fill_text("Base URL", llm_url)  # plain fields, though None by default
    # the judge's other fields left empty: they fall back to the generator's
    ui.choose("Judge provider", "openai-compatible")
    ui.fill_text("Output directory", out)
    ui.fill_text("Documents", docs)
    ui.fill_text("Judgements per answer", "1")
    ui.shot("form-filled")
    # API answers the UI got an error for, named in any failure below
    api_errors: list[str] = []
    page.on(
        "response",
        lambda r: (
            api_errors.append(f"{r.request.method} {r.url} -> {r.status}")
            if "/api/" in r.url and r.status >= 400
            else None
        ),
    )
    page.get_by_role("button", name="Submit").click()

    # back on the deployment's page: open the run by the name given in the form
    run_link = page.locator("a[href*='/runs/flow-run/']", has_text=run_name)
    oops = page.get_by_text("Something went wrong")
    ui.expect(run_link.or_(oops), "the submitted run, or the UI's error")
    submit = page.get_by_role("button", name="Submit")
    if oops.first.is_visible() and not run_link.first.is_visible() and submit.is_visible():
        # Seen once on a loaded CI machine: the server failed the submission and the form
        # stayed. A person submits again; the errors are printed for the record.
        ui.shot("submit-error")
        print("UI: submission failed, submitting again; API errors:", api_errors)
        submit.click()
    ui.expect(run_link, f"the submitted run in the deployment's runs (API errors: {api_errors})")
    ui.shot("run-submitted")
    run_link.first.click()
    page.wait_for_url(re.compile(r"/runs/flow-run/[0-9a-f-]{36}"))
    run_id = re.search(r"/flow-run/([0-9a-f-]{36})", page.url).group(1)
    state = page.locator(".page-heading-flow-run__meta .state-badge")
    ui.expect(state.and_(page.locator(".state--completed")), "the run's Completed state", 300)
    ui.shot("run-completed")

    page.get_by_role("tab", name="Artifacts").or_(
        page.get_by_text("Artifacts", exact=True)
    ).first.click()
    card = page.get_by_text("rag-qa-funnel", exact=True)
    ui.expect(card, "the funnel artifact card")
    ui.shot("artifacts")
    card.first.click()
    ui.expect(
        page.get_by_role("cell", name="n_rejected").or_(page.get_by_text("n_rejected")),
        "the funnel table",
    )
    ui.shot("funnel-table")
    shown = funnel_rows(page)
    check_summary_and_gate(ui, base)
    return run_id, shown


def open_artifact(ui: UI, key: str) -> None:
    """Back to the run's Artifacts tab, then the card of ``key``."""
    page = ui.page
    page.go_back(wait_until="networkidle")
    page.get_by_role("tab", name="Artifacts").or_(
        page.get_by_text("Artifacts", exact=True)
    ).first.click()
    card = page.get_by_text(key, exact=True)
    ui.expect(card, f"the {key} artifact card")
    card.first.click()


def check_form(ui: UI) -> None:
    """The form in groups: inputs and outputs first, runtime last, written titles, the
    absolute place of a relative output stated; no "None" toggle anywhere, and the judge
    provider a dropdown of the providers, like the provider."""
    page = ui.page
    assert page.get_by_text("Property is type").count() == 0
    assert page.get_by_role("button", name="None", exact=True).count() == 0
    for label in ("Provider", "Judge provider"):
        control = ui.field(label).locator("button.p-select-button__control")
        assert control.count() == 1, f"{label}: not a dropdown"
        assert ui.field(label).locator("textarea, input[type=text]").count() == 0, label
    ui.open_list("Judge provider")
    shown = sorted(t.strip() for t in page.get_by_role("option").all_inner_texts())
    assert shown == ["anthropic", "local", "openai", "openai-compatible"], shown
    ui.shot("form-judge-providers")
    page.keyboard.press("Escape")  # closed unchosen: the judge stays the generator's
    page.get_by_role("option").first.wait_for(state="hidden", timeout=10_000)
    ui.expect(page.get_by_text("default unless topics are given"), "the documents' default")
    top = {
        label: ui.field(label).bounding_box()["y"]
        for label in ("Output directory", "Documents", "Provider", "Words per passage",
                      "Judgements per answer", "Task runner", "Records per task run")
    }  # fmt: skip
    assert list(top) == sorted(top, key=top.get), top  # in the groups' order
    ui.expect(page.get_by_text("a relative path is under /"), "where a relative output lands")
    ui.expect(page.get_by_text("LLM request timeout (s)"), "a written title")
    assert page.get_by_text("Llm Timeout S").count() == 0


def check_summary_and_gate(ui: UI, base: str) -> None:
    """The run's summary (the funnel in percentages, the kept total, the reasons, where it
    was published) and a gate's card (its expectations, severity and time)."""
    page = ui.page
    open_artifact(ui, "rag-qa-summary")
    ui.expect(page.get_by_text("kept 4", exact=True), "the kept total in the summary")
    for text in ("Top rejection reasons", "kept %", "cost per kept example", "Gates"):
        ui.expect(page.get_by_text(text).first, f"'{text}' in the summary")
    ui.expect(page.get_by_text("Dataset published to"), "where the dataset was published")
    ui.expect(page.get_by_role("link", name="report.html"), "the link to report.html")
    ui.shot("summary")
    # a gate's artifact belongs to its task run (the gate's box in the graph): opened by key
    page.goto(f"{base}/artifacts/key/rag-qa-gate-answers", wait_until="networkidle")
    version = page.locator("a[href*='/artifacts/artifact/']")
    ui.expect(version, "the gate artifact's version")
    version.first.click()
    ui.expect(page.get_by_text("rag_qa.answers").first, "the gate's suite")
    ui.expect(page.get_by_text("severity").first, "the gate's severity")
    ui.expect(page.get_by_role("columnheader", name="observed"), "the expectations table")
    assert page.get_by_role("cell", name=re.compile(r"^expect_")).count() >= 3
    assert page.get_by_text("after stage").count() >= 1
    ui.shot("gate")


def funnel_rows(page) -> list[list[str]]:
    """The funnel table as shown: one list of cell texts per body row."""
    rows = page.locator("table tbody tr")
    return [
        [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]
