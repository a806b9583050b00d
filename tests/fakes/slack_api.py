"""The test suite's Slack Web API: the sandbox's own server (:mod:`bot.sandbox`), started on 127.0.0.1.

There is one fake of the Slack Web API, the sandbox that ``billbot serve --sandbox`` runs; its Block Kit
validator, message store, views and files are what tests talk to. This wrapper starts it with the options a
test needs (``deterministic`` ids and timestamps, ``open_ids`` so ids named by tests — ``CEXCEPTIONS``,
``U01OPERATOR``'s DM ``D01OPERATOR``, a made-up trigger or ``response_url`` — are taken) and keeps the
test-facing API the suite was written against: recorded :class:`~bot.sandbox.calls.Call`\\ s, ``wait_for``,
``fail_next`` (429 with ``Retry-After``, 5xx), ``fail[method] = "error_code"``, ``messages``, ``uploads``.

    with FakeSlackAPI(users={"U1": {"name": "ann", "real_name": "Ann", "email": "ann@x"}}) as api:
        client = make_client("xoxb-test", api.url)
        ...
        api.wait_for("chat.postMessage")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.sandbox.calls import Call
from bot.sandbox.server import SandboxServer, start_sandbox
from bot.sandbox.webapi import WebApi
from bot.sandbox.workspace import SandboxUser

__all__ = ["Call", "FakeSlackAPI"]


class FakeSlackAPI:
    def __init__(self, users: dict[str, dict[str, Any]] | None = None, *, team_id: str = "T0BILLBOT") -> None:
        self.team_id = team_id
        self.users: dict[str, dict[str, Any]] = dict(users or {})  # users.info answers these (read at each call)
        self._sandbox: SandboxServer | None = None
        self._api: WebApi | None = None  # its call log and faults stay readable after stop()
        self._kept: tuple[dict[tuple[str, str], dict[str, Any]], dict[str, bytes]] | None = None

    def _sandbox_users(self) -> list[SandboxUser]:
        return [
            SandboxUser(
                id=uid,
                name=str(u.get("real_name", u.get("name", uid))),
                email=u.get("email"),
                display=str(u.get("name", uid.lower())),
                tz=str(u.get("tz", "Europe/Berlin")),
            )
            for uid, u in self.users.items()
        ]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlackAPI:
        self._sandbox = start_sandbox(
            deterministic=True, open_ids=True, team_id=self.team_id, users_provider=self._sandbox_users,
            keep_calls=None,
        )
        self._api = self._sandbox.api
        self._kept = None
        return self

    def stop(self) -> None:
        """Stop the server; what it recorded and stored stays readable."""
        if self._sandbox is not None:
            self._kept = (self.messages, self.uploads)
            self._sandbox.stop()
            self._sandbox = None

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def sandbox(self) -> SandboxServer:
        assert self._sandbox is not None, "start() the fake first"
        return self._sandbox

    @property
    def port(self) -> int:
        return self.sandbox.http.port

    @property
    def base(self) -> str:
        return self.sandbox.url.rstrip("/")

    @property
    def url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=…)`` / ``SLACK_API_URL``."""
        return self.sandbox.api_url

    def response_url(self, name: str = "r") -> str:
        return f"{self.base}/response/{name}"

    @property
    def api(self) -> WebApi:
        assert self._api is not None, "start() the fake first"
        return self._api

    # ------------------------------------------------------------------ recorded calls and faults

    @property
    def calls(self) -> list[Call]:
        return self.api.log.calls

    @property
    def usergroups(self) -> dict[str, list[str]]:
        """Slack user groups ``usergroups.users.list`` answers: id → member ids (others: ``no_such_subteam``)."""
        return self.api.usergroups

    @property
    def fail(self) -> dict[str, str]:
        """method → Slack error code, answered (and recorded) until removed."""
        return self.api.faults.errors

    def fail_next(self, method: str, *, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get ``status`` (429 with ``Retry-After``)."""
        self.api.faults.fail_next(method, status=status, retry_after=retry_after, times=times)

    def reset(self) -> None:
        self.api.log.reset()

    def calls_to(self, method: str) -> list[Call]:
        return self.api.log.calls_to(method)

    def wait_for(self, method: str, n: int = 1, *, timeout: float = 10.0,
                 where: Callable[[Call], bool] | None = None) -> list[Call]:
        """Wait until at least ``n`` calls of ``method`` (matching ``where``) were recorded."""
        return self.api.log.wait_for(method, n, timeout=timeout, where=where)

    # ------------------------------------------------------------------ what the workspace holds

    @property
    def messages(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(channel, ts) → message (``text``, ``blocks`` as billbot sent them, ``thread_ts``, ``replies``), oldest
        first."""
        if self._kept is not None:
            return self._kept[0]
        stored = self.sandbox.workspace.all_messages(as_sent=True)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for m in stored:
            out[(m["channel"], m["ts"])] = {**m, "replies": []}
        for m in stored:
            parent = out.get((m["channel"], str(m["thread_ts"])))
            if parent is not None and m["thread_ts"] != m["ts"]:
                parent["replies"].append(out[(m["channel"], m["ts"])])
        return out

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self.messages[(channel, ts)]

    @property
    def uploads(self) -> dict[str, bytes]:
        if self._kept is not None:
            return self._kept[1]
        return self.sandbox.workspace.uploads()
