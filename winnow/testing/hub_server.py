"""A test double of the Hugging Face Hub: the few HTTP routes that ``huggingface_hub``
calls to create a dataset repo and commit a folder to it. NOT the Hub: it keeps repos in
memory and exists so ``winnow push`` runs the real ``HfApi`` client code offline.

Routes (as ``huggingface_hub`` 1.x/2.x sends them):

- ``POST /api/repos/create``: a repo (409 when it exists, which ``exist_ok`` accepts);
- ``POST /api/validate-yaml``: the README's YAML header must parse (400 otherwise);
- ``POST /api/{type}s/{repo}/preupload/{revision}``: every file is to be sent inline
  (``uploadMode: regular``), so no LFS or Xet storage is involved;
- ``POST /api/{type}s/{repo}/commit/{revision}``: the NDJSON commit; its base64 files
  are stored.

Every request needs ``Authorization: Bearer <token>`` with the token the double was made
with (401 otherwise). Every request is recorded (``requests``: method, path, the
Authorization header) and every committed file kept (``repos[repo_id].files``), so a
test can check what arrived and with which credentials. Any other route answers 404 and
is listed in ``unexpected``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml

from winnow.testing.llm_server import Receive, Scope, Send, ServerThread, read_body, send_json

REPO_ROUTE = re.compile(r"^/api/(datasets|models|spaces)/(.+)/(preupload|commit)/([^/]+)$")
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


@dataclass
class Request:
    method: str
    path: str
    authorization: str


@dataclass
class Repo:
    repo_id: str
    kind: str
    private: bool | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


class HubDouble:
    """The ASGI app."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.base_url = ""
        self.requests: list[Request] = []
        self.unexpected: list[str] = []
        self.repos: dict[str, Repo] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        with self._lock:
            self.requests.append(Request(method, path, auth))
        if auth != f"Bearer {self.token}":
            await send_json(send, 401, {"error": "Invalid credentials in Authorization header"})
            return
        body = await read_body(receive)
        if method == "POST" and path == "/api/repos/create":
            await self.create(json.loads(body), send)
        elif method == "POST" and path == "/api/validate-yaml":
            await self.validate(json.loads(body), send)
        elif method == "POST" and (m := REPO_ROUTE.match(path)):
            kind, repo_id, action, _revision = m.groups()
            repo = self.repos.get(repo_id)
            if repo is None or repo.kind != kind[:-1]:
                await send_json(send, 404, {"error": f"Repository {repo_id} not found"})
            elif action == "preupload":
                await self.preupload(json.loads(body), send)
            else:
                await self.commit(repo, body, send)
        else:
            with self._lock:
                self.unexpected.append(f"{method} {path}")
            await send_json(send, 404, {"error": f"no route {method} {path} in the Hub double"})

    async def create(self, payload: dict[str, Any], send: Send) -> None:
        name, org = payload["name"], payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        kind = payload.get("type") or "model"
        url = (
            f"{self.base_url}/{kind}s/{repo_id}"
            if kind != "model"
            else f"{self.base_url}/{repo_id}"
        )
        with self._lock:
            if repo_id in self.repos:
                await send_json(send, 409, {"error": "You already created this repo", "url": url})
                return
            private = payload.get("private", payload.get("visibility") == "private")
            self.repos[repo_id] = Repo(repo_id=repo_id, kind=kind, private=private)
        await send_json(send, 200, {"url": url, "name": repo_id})

    async def validate(self, payload: dict[str, Any], send: Send) -> None:
        match = FRONT_MATTER.match(payload.get("content", ""))
        errors = []
        try:
            meta = yaml.safe_load(match.group(1)) if match else None
            if match and not isinstance(meta, dict):
                errors.append("the metadata is not a YAML mapping")
        except yaml.YAMLError as exc:
            errors.append(f"invalid YAML: {exc}")
        status = 400 if errors else 200
        await send_json(send, status, {"errors": [{"message": e} for e in errors], "warnings": []})

    async def preupload(self, payload: dict[str, Any], send: Send) -> None:
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
            for f in payload.get("files", [])
        ]
        await send_json(send, 200, {"files": files, "commitOid": "0" * 40})

    async def commit(self, repo: Repo, body: bytes, send: Send) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        added: dict[str, bytes] = {}
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                if value.get("encoding") != "base64":
                    await send_json(send, 400, {"error": "files must be base64"})
                    return
                added[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] != "header":  # lfsFile, deletedFile...: never asked for here
                await send_json(send, 400, {"error": f"unexpected commit item {item['key']}"})
                return
        oid = hashlib.sha1(body).hexdigest()
        with self._lock:
            repo.files.update(added)
            repo.commits.append({"oid": oid, "summary": header.get("summary"), "files": added})
        url = f"{self.base_url}/{repo.kind}s/{repo.repo_id}/commit/{oid}"
        await send_json(send, 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})


class HubTestServer(ServerThread):
    """The Hub double in a thread; ``base_url`` is the endpoint to give ``HfApi``."""

    def __init__(self, token: str, port: int = 0) -> None:
        super().__init__(HubDouble(token), port)  # type: ignore[arg-type]

    @property
    def hub(self) -> HubDouble:
        return self.app  # type: ignore[return-value]

    def start(self) -> HubTestServer:
        super().start()
        self.hub.base_url = self.base_url
        return self
