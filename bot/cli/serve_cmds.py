"""`billbot serve`: the Slack app (HTTP or Socket Mode), with the local sandbox workspace when no Slack
credentials are set."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from billing.errors import Invalid, NotAllowed
from bot.cli.groups import app
from bot.cli.output import err_console, handle_errors, out_console


def _wait_forever(stop: threading.Event) -> None:
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        out_console.print("stopping…")


@app.command("serve")
@handle_errors
def serve(  # noqa: PLR0917 - Typer maps parameters to options
    port: int | None = typer.Option(None, "--port", help="Port of billbot's /slack/events (default PORT, 3000)."),
    sandbox_port: int | None = typer.Option(
        None, "--sandbox-port", help="Port of the local sandbox workspace (default SANDBOX_PORT, 3001)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    sandbox_public: bool = typer.Option(
        False, "--sandbox-public",
        help="Allow the sandbox (where anyone picks who they are) on a non-loopback --host.",
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open the sandbox in a browser."),
    no_clock: bool = typer.Option(False, "--no-clock", help="Do not run schedules and SLA sweeps in this process."),
) -> None:
    """Run billbot. With SLACK_BOT_TOKEN: Slack over HTTP (or Socket Mode with SLACK_APP_TOKEN).
    Without Slack credentials: a local sandbox workspace in the browser, talking to the same app."""
    from bot.context import settings as current_settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot").setLevel(logging.INFO)
    s = current_settings()
    port = s.port if port is None else port
    sandbox_port = s.sandbox_port if sandbox_port is None else sandbox_port
    for name, value in (("--port", port), ("--sandbox-port", sandbox_port)):
        if not 0 <= value <= 65535:
            raise Invalid([f"{name}: must be a port number (got {value})"])
    stop = threading.Event()

    if s.slack_bot_token and s.slack_app_token:
        from bot.app import create_app, start_socket_mode

        clock = _start_clock(no_clock)
        out_console.print("billbot connected to Slack over Socket Mode")
        try:
            start_socket_mode(create_app(s), s)
        finally:
            if clock is not None:
                clock.shutdown(wait=False)
        return

    if s.slack_bot_token:
        if not s.slack_signing_secret:
            raise Invalid(["SLACK_SIGNING_SECRET: required to serve Slack over HTTP (or set SLACK_APP_TOKEN)"])
        from bot.app import create_wsgi
        from bot.sandbox.wsgi import serve_in_thread

        wsgi = create_wsgi(s)
        with _ports(host, ("--port / PORT", port)):
            server = serve_in_thread(wsgi, host=host, port=port, name="billbot-app")
        clock = _start_clock(no_clock)
        out_console.print(f"billbot listening on http://{host}:{server.port}/slack/events (Ctrl-C stops)")
        try:
            _wait_forever(stop)
        finally:
            if clock is not None:
                clock.shutdown(wait=False)
            server.stop()
        return

    _serve_sandbox(host=host, port=port, sandbox_port=sandbox_port, sandbox_public=sandbox_public,
                   no_browser=no_browser, no_clock=no_clock, stop=stop)


def _serve_sandbox(*, host: str, port: int, sandbox_port: int, sandbox_public: bool, no_browser: bool,
                   no_clock: bool, stop: threading.Event) -> None:
    """No Slack credentials: the sandbox workspace and billbot's app against it (loopback unless
    ``--sandbox-public``)."""
    from bot.sandbox.session import start_session

    if not _is_loopback(host):
        if not sandbox_public:
            raise Invalid([f"--host: {host} is not a loopback address; the sandbox lets anyone act as any user "
                           "(finance manager included). Pass --sandbox-public to serve it there anyway."])
        err_console.print(f"WARNING: the sandbox listens on {host}: anyone who reaches it can act as any "
                          "billbot user, finance manager included.", highlight=False, soft_wrap=True)
    with _ports(host, ("--port / PORT", port), ("--sandbox-port / SANDBOX_PORT", sandbox_port)):
        session = start_session(port=port, sandbox_port=sandbox_port, host=host, with_clock=not no_clock)
    out_console.print(
        f"billbot sandbox workspace: [bold]{session.url}[/bold]\n"
        f"  (no Slack credentials set — billbot's /slack/events at {session.events_url} gets signed requests from it;"
        f" {len(session.posted)} waiting exception message(s) posted)\n"
        + (f"  Outbox (the mails billbot sends, through a local mail server): {session.outbox_url}\n"
           if session.outbox_url else "")
        + "  Ctrl-C stops.",
        highlight=False,
        soft_wrap=True,
    )
    if not no_browser:
        webbrowser.open(session.url)
    try:
        _wait_forever(stop)
    finally:
        session.stop()


@contextmanager
def _ports(host: str, *ports: tuple[str, int]) -> Iterator[None]:
    """A port that cannot be bound becomes one line naming the option and setting that choose it."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        busy = [(name, p) for name, p in ports if p and not _can_bind(host, p)] or list(ports)
        what = "; ".join(f"port {p} on {host} cannot be used ({e.strerror}): choose another with {name}"
                         for name, p in busy)
        raise NotAllowed(what, code="port_unavailable") from None


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _start_clock(disabled: bool):  # type: ignore[no-untyped-def]
    """The embedded clock (schedules, SLA sweep, digest); in distributed mode the `clock` role runs it."""
    if disabled:
        return None
    try:
        from bot import jobs
        from bot.scheduler import start_embedded
    except ImportError:
        return None
    if jobs.mode() == "distributed":
        return None
    return start_embedded()
