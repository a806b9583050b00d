"""The Bolt app: factory, WSGI endpoint, Socket Mode.

- HTTP mode: ``POST /slack/events`` through :class:`bot.handlers.edge.Edge` (413 over 1 MiB unread,
  401 for a bad or five-minute-old signature, 400 for a signed body that is no Slack payload, 403 for
  another workspace) and then Bolt's WSGI adapter, plus ``GET /healthz`` (:mod:`bot.health`). It needs
  ``SLACK_SIGNING_SECRET``: without it nothing is served (no secret is written in the code). gunicorn
  serves ``bot.app:application``, created lazily on the first request of each worker; its
  ``on_starting`` hook (``gunicorn.conf.py``) refuses to start without the secret.
- Socket Mode when ``SLACK_APP_TOKEN`` is set (no public URL needed).
- Fast ack: ``process_before_response=False`` — each listener acks first and Bolt answers Slack as
  soon as ``ack()`` is called. Listeners run on one :class:`TrackedExecutor`; decisions are handed
  on to the jobs facade's ``decide`` task (its own niced process pool in embedded mode, a
  Procrastinate worker in distributed mode), so the web process's threads and GIL are left to acks.
- Slack retries (``X-Slack-Retry-Num``) are acknowledged and ignored: the first delivery is
  already being handled, and decisions are idempotent anyway.
- The Web API client comes from :func:`bot.slack.client.make_client` (slack_sdk retry handlers for
  429 / 5xx / connection errors), with ``SLACK_API_URL`` as base URL.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot import context, health, jobs, runtime
from bot.handlers import register_all
from bot.handlers.deps import Deps
from bot.handlers.edge import Edge, installed_team_of
from bot.runtime import Role
from bot.slack.client import make_client
from storage.settings import Settings, SettingsError, get_settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


class TrackedExecutor(ThreadPoolExecutor):
    """A thread pool that knows how much work is in flight (tests and shutdown wait for idle)."""

    def __init__(self, max_workers: int, name: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=name)
        self._inflight = 0
        self._cv = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._cv:
            self._inflight += 1
        try:
            fut = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut: Future[Any] | None) -> None:
        with self._cv:
            self._inflight -= 1
            self._cv.notify_all()

    @property
    def inflight(self) -> int:
        return self._inflight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True


def wait_until_idle(bolt: Any, timeout: float = 30.0) -> bool:
    """Wait until the work after each ack has finished: ``bolt``'s listener threads (``create_app``)
    and the jobs they handed on (decisions; inline jobs run inside the listener). Both must be idle
    twice in a row, since a listener may still be submitting when the pool looks empty."""
    executors = getattr(bolt, "billbot_executors", ())
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if not all(ex.wait_idle(max(0.0, deadline - time.monotonic())) for ex in executors):
            return False
        if not jobs.wait_idle(max(0.0, deadline - time.monotonic())):
            return False
        quiet = quiet + 1 if all(ex.inflight == 0 for ex in executors) and jobs.inflight() == 0 else 0
    return True


def ignore_slack_retries(request: Any, next: Callable[[], Any]) -> Any:  # noqa: A002 - Bolt's name
    """Ack Slack's retries without handling them again (the first delivery is being handled)."""
    if request.headers.get("x-slack-retry-num"):
        return BoltResponse(status=200, body="", headers={"x-slack-no-retry": "1"})
    return next()


NEEDS_SIGNING = ("bad setting: SLACK_SIGNING_SECRET: required to serve Slack over HTTP "
                  "(or set SLACK_APP_TOKEN for Socket Mode)")


def _signing_secret(settings: Settings) -> str | None:
    """The secret requests must be signed with; None in Socket Mode (Slack's requests arrive over the
    WebSocket billbot opened, unsigned). There is no fallback: no secret is written in the code, and
    an app without one is never served over HTTP (:func:`create_wsgi` refuses it)."""
    if settings.slack_signing_secret:
        return settings.slack_signing_secret
    if settings.slack_app_token:
        return None
    raise SettingsError(NEEDS_SIGNING)


class _TokenFromEnvironment(logging.Filter):
    """Bolt reads ``SLACK_BOT_TOKEN`` from the environment even when it is given a client (ours, made
    from that same token) and then warns that the token will be unused: noise at every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


_BOLT_LOG = logging.getLogger("billbot.bolt")
_BOLT_LOG.addFilter(_TokenFromEnvironment())


def create_app(settings: Settings | None = None, client: WebClient | None = None, *,
               role: Role = "web") -> App:
    """The Bolt app with every handler registered; wires this process (:func:`bot.runtime.wire`)
    with the app's client, so what its workflows do after commit is told through it."""
    settings = settings or get_settings()
    client = client or make_client(settings.slack_bot_token or "xoxb-sandbox", settings.slack_api_url)
    secret = _signing_secret(settings)
    executor = TrackedExecutor(max_workers=16, name="billbot-listener")  # acks (and quick reads)
    app = App(
        name="billbot",
        client=client,
        # Socket Mode verifies nothing over HTTP: a random secret nobody knows, and no HTTP (create_wsgi)
        signing_secret=secret or secrets.token_hex(32),
        process_before_response=False,
        request_verification_enabled=secret is not None,
        token_verification_enabled=False,  # auth.test runs on the first request, not at import
        listener_executor=executor,
        logger=_BOLT_LOG,
    )
    deps = Deps(settings=settings, db=context.get_db, key=context.get_key, background=jobs.submit)

    def provide_deps(context: Any, next: Callable[[], Any]) -> Any:  # noqa: A002 - Bolt's name
        context["billbot"] = deps
        return next()

    app.use(ignore_slack_retries)
    app.use(provide_deps)
    register_all(app)
    runtime.wire(role, client=client)
    app.billbot_executors = (executor,)  # type: ignore[attr-defined]
    app.billbot_signing_secret = secret  # type: ignore[attr-defined]
    return app


def _health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``GET /healthz``: 200 when the database answers, its schema is current and the signing key is
    readable; else 503. Each check by name, with what to fix (no secrets in it)."""
    checks = health.liveness_checks(get_settings())
    ok = all(c.ok for c in checks)
    status = "200 OK" if ok else "503 Service Unavailable"
    body = {"ok": ok, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}}
    data = json.dumps(body).encode()
    start_response(status, [("content-type", "application/json"), ("content-length", str(len(data)))])
    return [data]


def create_wsgi(settings: Settings | None = None, app: App | None = None) -> Callable[..., Iterable[bytes]]:
    """A WSGI callable: ``POST /slack/events`` (Bolt) and ``GET /healthz``."""
    bolt = app or create_app(settings)
    secret = getattr(bolt, "billbot_signing_secret", None)
    if not secret:
        raise SettingsError(NEEDS_SIGNING)
    team = (settings.slack_team_id if settings else None) or get_settings().slack_team_id
    handler = Edge(SlackRequestHandler(bolt, path=EVENTS_PATH), secret=secret, path=EVENTS_PATH,
                   installed_team=installed_team_of(bolt.client, team))

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return _health(environ, start_response)
        return handler(environ, start_response)

    wsgi.bolt_app = bolt  # type: ignore[attr-defined]
    wsgi.edge = handler  # type: ignore[attr-defined]
    return wsgi


class _LazyApplication:
    """gunicorn's ``bot.app:application``: the app is built on the first request of each worker
    (after the fork), so nothing connects to the database or Slack at import time."""

    def __init__(self) -> None:
        self._wsgi: Callable[..., Iterable[bytes]] | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._wsgi is None:
            with self._lock:
                if self._wsgi is None:
                    self._wsgi = create_wsgi()
                    _freeze_startup_objects()
        return self._wsgi(environ, start_response)


def _freeze_startup_objects() -> None:
    """Move everything imported and built at start-up out of the garbage collector's view
    (``gc.freeze``): a full collection in a request's path then walks only what requests made —
    milliseconds less at the tail of ack latency."""
    import gc

    gc.collect()
    gc.freeze()


application = _LazyApplication()


def start_socket_mode(app: App, settings: Settings) -> None:
    """Connect over Socket Mode (blocks)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    SocketModeHandler(app, app_token=settings.slack_app_token).start()  # type: ignore[no-untyped-call]


def serve(settings: Settings | None = None, *, host: str = "127.0.0.1", port: int | None = None) -> None:
    """``billbot serve``: Socket Mode when ``SLACK_APP_TOKEN`` is set, else HTTP on ``PORT`` with a
    small threaded WSGI server (use gunicorn ``bot.app:application`` in production)."""
    settings = settings or get_settings()
    if settings.slack_app_token:
        start_socket_mode(create_app(settings), settings)
        return
    server = make_threaded_server(host, port or settings.port, create_wsgi(settings))
    log.info("billbot listening on http://%s:%s%s", host, server.server_port, EVENTS_PATH)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def make_threaded_server(host: str, port: int, wsgi_app: Callable[..., Iterable[bytes]], *, quiet: bool = True) -> Any:
    """A stdlib threaded WSGI server (port 0 = any free port; see ``server.server_port``)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    class _Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            if not quiet:
                super().log_message(format, *args)

    return make_server(host, port, wsgi_app, server_class=_Server, handler_class=_Handler)


def check_http_settings(settings: Settings | None = None) -> None:
    """Refuse to start an HTTP role without ``SLACK_SIGNING_SECRET`` (gunicorn's ``on_starting`` hook
    in ``gunicorn.conf.py`` calls this, so the web role fails at start, not on the first request)."""
    settings = settings or get_settings()
    if not settings.slack_signing_secret:
        raise SettingsError(NEEDS_SIGNING)
