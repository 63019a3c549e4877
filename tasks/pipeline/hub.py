"""Pushing a published dataset folder to the Hugging Face Hub (``winnow push``).

The folder is checked against its ``manifest.json`` first (every file there, with its
size and sha256: a folder half-copied or edited since it was published is not pushed),
and must hold its dataset card (``README.md``). Then ``huggingface_hub`` creates the
dataset repo if needed and commits the folder in one commit.

The token comes from a Prefect Secret block when one is named, else ``HF_TOKEN``, else
the login ``huggingface_hub`` saved (``hf auth login``). It is passed to the client and
nowhere else: never printed, logged or stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel

from tasks.llm.base import ConfigError
from tasks.llm.secrets import secret_value
from tasks.store.publish import MANIFEST


class HubError(RuntimeError):
    pass


class PushResult(BaseModel):
    repo_url: str
    commit_url: str
    files: list[str]


def hub_token(secret: str | None = None) -> str:
    """The Hugging Face token: the Secret block ``secret``, else ``HF_TOKEN``, else the
    saved login."""
    if secret:
        try:
            return secret_value(secret)
        except ConfigError as exc:
            raise HubError(str(exc)) from None
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: set HF_TOKEN, log in with `hf auth login`, or name a "
            "Prefect Secret block holding one (--token-secret)"
        )
    return token


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_folder(folder: Path) -> list[str]:
    """The files of a published dataset folder, in manifest order, after checking each
    against the manifest; a HubError says what is wrong."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise HubError(f"{folder} is not a published dataset folder (no {MANIFEST})")
    files = json.loads(manifest_path.read_text(encoding="utf-8")).get("files", {})
    if "README.md" not in files:
        raise HubError(
            f"{folder} has no dataset card (README.md): it was published before Winnow wrote "
            "cards; run the same recipe again to publish it anew (the journal answers every "
            "request it made, so the re-run pays nothing)"
        )
    for name, info in files.items():
        path = folder / name
        if not path.is_file():
            raise HubError(f"{path} is missing: the folder is not the one published")
        if path.stat().st_size != info["bytes"] or _sha256(path) != info["sha256"]:
            raise HubError(f"{path} changed since it was published (its sha256 differs)")
    return [*files, MANIFEST]


def push_dataset(
    folder: str | Path,
    repo_id: str,
    token: str,
    *,
    endpoint: str | None = None,
    private: bool | None = None,
    message: str | None = None,
) -> PushResult:
    """Create the dataset repo ``repo_id`` if needed and commit the folder to it."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    names = check_folder(folder)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            repo_type="dataset",
            allow_patterns=names,
            commit_message=message or f"Winnow: {folder.name}",
        )
    except HfHubHTTPError as exc:
        raise HubError(f"the Hub refused the push to {repo_id}: {exc}") from None
    return PushResult(repo_url=str(repo_url), commit_url=commit.commit_url, files=names)
