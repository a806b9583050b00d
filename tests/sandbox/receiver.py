"""A stand-in for billbot's ``/slack/events`` endpoint: records every request and answers with a handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.wsgi import RunningServer, serve_in_thread


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.form["payload"])


Reply = tuple[int, Any]


@dataclass
class Receiver:
    handler: Callable[[Seen], Reply] = lambda seen: (200, b"")
    seen: list[Seen] = field(default_factory=list)
    http: RunningServer | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
        seen = Seen(headers, body)
        self.seen.append(seen)
        status, out = self.handler(seen)
        if isinstance(out, dict):
            start_response(f"{status} X", [("Content-Type", "application/json")])
            return [json.dumps(out).encode()]
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [out if isinstance(out, bytes) else str(out).encode()]

    def start(self) -> str:
        self.http = serve_in_thread(self, name="receiver")
        return self.http.url + "slack/events"

    def stop(self) -> None:
        if self.http:
            self.http.stop()
