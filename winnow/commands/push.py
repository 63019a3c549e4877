"""`winnow push RUN_ID REPO_ID`: a run's published dataset to the Hugging Face Hub."""

from __future__ import annotations

import typer

from winnow.console import fail, out


def push(
    run_id: str = typer.Argument(..., help="A run id, or a unique prefix of one."),
    repo_id: str = typer.Argument(..., help="The dataset repo, e.g. my-org/code-sft-v1."),
    private: bool | None = typer.Option(
        None, "--private/--public", help="Visibility of a repo this creates (default: the Hub's)."
    ),
    token_secret: str | None = typer.Option(
        None,
        "--token-secret",
        help="Name of a Prefect Secret block holding the token (default: HF_TOKEN, then "
        "the saved `hf auth login`).",
    ),
    endpoint: str | None = typer.Option(
        None, help="The Hub's URL (default: HF_ENDPOINT, else https://huggingface.co)."
    ),
    message: str | None = typer.Option(None, help="Commit message."),
) -> None:
    """Upload a run's dataset folder (data, dataset card, report) to a Hub dataset repo."""
    from tasks.pipeline.hub import HubError, hub_token, push_dataset
    from tasks.store import fsio
    from tasks.store.catalog import Catalog, CatalogError

    try:
        run = Catalog().get_run(run_id)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    if run is None:
        raise fail(f"no run {run_id!r} in this project (see `winnow runs`)")
    folder = run.get("out_dir")
    if not folder or run.get("status") != "completed":
        raise fail(f"run {run['run_id']} ({run.get('status')}) published no dataset")
    if fsio.is_remote(folder):
        raise fail(f"run {run['run_id']} published to {folder}: copy it here first, then push")
    path = fsio.local_path(folder)
    if not path.is_dir():
        raise fail(f"run {run['run_id']} published one file ({path}), not a dataset folder")
    try:
        token = hub_token(token_secret)
        result = push_dataset(
            path, repo_id, token, endpoint=endpoint, private=private, message=message
        )
    except HubError as exc:
        raise fail(str(exc)) from None
    out.print(f"pushed {len(result.files)} files of {run['run_id']} to {result.repo_url}")
    out.print(f"commit: {result.commit_url}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
