"""A minimal fake Slack Web API (threaded ``http.server`` on 127.0.0.1:0) recording every call.

Written for the schedules tests because ``tests/fakes/slack_api.py`` did not exist yet. It answers
``chat.postMessage``, ``chat.getPermalink``, ``conversations.open``, ``files.getUploadURLExternal``,
the upload URL POST, and ``files.completeUploadExternal``; ``fail`` makes a method answer an error.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploads: dict[str, bytes] = {}
        self.fail: dict[str, str] = {}  # method → error code
        self._lock = threading.Lock()
        self._ts = 1_700_000_000.0
        self._files = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlparse(self.path).path
                if path.startswith("/upload/"):
                    fake.uploads[path.rsplit("/", 1)[-1]] = body
                    self._send(200, b"OK - " + str(len(body)).encode(), "text/plain")
                    return
                method = path.rsplit("/", 1)[-1]
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    params = json.loads(body or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    params.update({k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()})
                out = fake.answer(method, params)
                self._send(200, json.dumps(out).encode(), "application/json")

            def _send(self, code: int, data: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts:.6f}"

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append((method, params))
            if method in self.fail:
                return {"ok": False, "error": self.fail[method]}
            if method == "chat.postMessage":
                ch = params.get("channel", "")
                ch_id = ch if ch[:1] in "CDG" and ch.isupper() else "C" + ch.upper().replace("-", "")[:10]
                return {"ok": True, "channel": ch_id, "ts": self._next_ts(), "message": {"text": params.get("text")}}
            if method == "chat.getPermalink":
                return {"ok": True, "permalink": f"https://fake.slack/archives/{params.get('channel')}/p{params.get('message_ts')}"}
            if method == "conversations.open":
                return {"ok": True, "channel": {"id": "D" + str(params.get("users", "")).upper()}}
            if method == "files.getUploadURLExternal":
                self._files += 1
                fid = f"F{self._files:04d}"
                base = self.url.rsplit("/api/", 1)[0]
                return {"ok": True, "file_id": fid, "upload_url": f"{base}/upload/{fid}"}
            if method == "files.completeUploadExternal":
                files = params.get("files")
                files = json.loads(files) if isinstance(files, str) else files
                return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
            return {"ok": True}

    def of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for m, p in self.calls if m == method]

    def wait_for(self, method: str, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.of(method)) < n:
            time.sleep(0.02)
        return self.of(method)
