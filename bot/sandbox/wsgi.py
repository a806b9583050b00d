"""A threaded stdlib WSGI server (``wsgiref`` + ``ThreadingMixIn``) run in a background thread.

Used for the sandbox and for billbot's own HTTP endpoint under ``billbot serve`` (gunicorn serves production
through the Procfile). Threads matter: while the sandbox forwards a click to billbot and waits for the ack,
billbot calls the sandbox's Web API (``views.open``) — a single-threaded server would deadlock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class QuietHandler(WSGIRequestHandler):
    """Request lines go to ``logging`` at DEBUG instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


@dataclass
class RunningServer:
    server: ThreadingWSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "wsgi") -> RunningServer:
    """Start ``app`` on ``host:port`` (0 = a free port) in a daemon thread; ``stop()`` ends it."""
    server = make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    assert isinstance(server, ThreadingWSGIServer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True)
    thread.start()
    return RunningServer(server=server, thread=thread, host=host)
