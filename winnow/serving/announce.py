"""What ``winnow serve`` tells the person who started it: where the UI is, and which
deployments are registered there (with a link to each and the command that runs it)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx


def ui_url(api_url: str) -> str:
    """The UI's address for an API address: ``PREFECT_UI_URL`` when set, else the API's
    without its ``/api`` (where ``prefect server start`` serves both)."""
    configured = os.environ.get("PREFECT_UI_URL")
    if configured:
        return configured.rstrip("/")
    return api_url.rstrip("/").removesuffix("/api")


def registered(api_url: str, names: list[str]) -> list[dict[str, str]]:
    """The deployments among ``names`` that the server has, each as ``name``, ``flow``
    (its flow's name) and ``id``; [] when the server does not answer."""
    try:
        found = httpx.post(
            f"{api_url}/deployments/filter",
            json={"deployments": {"name": {"any_": names}}},
            timeout=5,
        ).json()
        flow_ids = sorted({d["flow_id"] for d in found})
        flows = httpx.post(
            f"{api_url}/flows/filter", json={"flows": {"id": {"any_": flow_ids}}}, timeout=5
        ).json()
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []
    flow_names = {f["id"]: f["name"] for f in flows}
    return [
        {"name": d["name"], "flow": flow_names.get(d["flow_id"], "?"), "id": d["id"]}
        for d in sorted(found, key=lambda d: d["name"])
    ]


class Announcer:
    """Polled by the supervisor while the serve loop starts: once every expected
    deployment is registered (or ``timeout_s`` has passed), says which are, once."""

    def __init__(
        self,
        api_url: str,
        names: list[str],
        say: Callable[[str], None],
        timeout_s: float = 180.0,
        every_s: float = 2.0,
    ) -> None:
        self.api_url = api_url
        self.names = names
        self.say = say
        self.deadline = time.monotonic() + timeout_s
        self.every_s = every_s
        self.next_poll = 0.0
        self.done = False

    def poll(self) -> None:
        now = time.monotonic()
        if self.done or now < self.next_poll:
            return
        self.next_poll = now + self.every_s
        found = registered(self.api_url, self.names)
        if len(found) < len(self.names) and now < self.deadline:
            return
        self.done = True
        self.say(describe(found, self.names, ui_url(self.api_url)))


def describe(found: list[dict[str, str]], names: list[str], ui: str) -> str:
    """The lines that name each registered deployment, and any that is missing."""
    lines = [f"Registered {len(found)} deployment(s) (UI: {ui}/deployments):"]
    for d in found:
        lines.append(
            f"  {d['flow']}/{d['name']}  {ui}/deployments/deployment/{d['id']}"
            f"  (prefect deployment run '{d['flow']}/{d['name']}')"
        )
    missing = sorted(set(names) - {d["name"] for d in found})
    if missing:
        lines.append("  not registered yet: " + ", ".join(missing))
    return "\n".join(lines)
