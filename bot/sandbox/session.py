"""One sandbox session: the sandbox workspace plus billbot's real Slack app wired to it, in this process.

What ``billbot serve`` does without Slack credentials (and what the end-to-end test starts):

1. start the sandbox on ``sandbox_port`` with a fresh bot token and signing secret for this session, its people
   read from billbot's ``users`` table;
2. point billbot at it — ``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET``, ``SLACK_API_URL`` in the environment, so
   every ``WebClient`` billbot makes (Bolt's, the jobs', the side effects') talks to the sandbox through
   ``base_url``, the same code path as real Slack;
3. build the Bolt app (``bot.app.create_app`` / ``create_wsgi``) and serve ``/slack/events`` on ``port``; the
   sandbox forwards clicks, modal submissions and commands there, signed;
4. post the messages of open exceptions that have none yet (a billing run started from the CLI before
   ``serve`` had no Slack to post to);
5. start the embedded clock (SLA sweep, schedules, digest) when asked;
6. unless ``SMTP_URL`` is set, start the Outbox — a local SMTP server on 127.0.0.1 (:mod:`bot.sandbox.outbox`,
   mails kept in ``var/outbox/``) — and point ``SMTP_URL`` (and ``MAIL_FROM``, if unset) at it, so the invoice
   mails billbot sends show on the sandbox's Outbox page (``/outbox``).

:meth:`SandboxSession.stop` undoes all of it, including the environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import context, jobs, runtime
from bot.app import create_app, create_wsgi, wait_until_idle
from bot.sandbox.outbox import SANDBOX_MAIL_FROM, Outbox
from bot.sandbox.server import SandboxServer, start_sandbox
from bot.sandbox.users import users_from_db
from bot.sandbox.wsgi import RunningServer, serve_in_thread
from bot.scheduler import start_embedded
from bot.slack import exceptions as slack_exceptions
from bot.slack.client import forget_clients
from storage.settings import get_settings

log = logging.getLogger(__name__)

ENV_KEYS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_URL", "SLACK_APP_TOKEN", "SMTP_URL", "MAIL_FROM")


@dataclass
class SandboxSession:
    sandbox: SandboxServer
    app_server: RunningServer
    wsgi: Any
    clock: Any = None
    posted: list[int] = field(default_factory=list)  # exceptions whose messages were posted at start
    outbox: Outbox | None = None  # the local mail server (None when SMTP_URL was set)
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def url(self) -> str:
        return self.sandbox.url

    @property
    def outbox_url(self) -> str | None:
        """The Outbox page, when this session keeps billbot's mails."""
        return self.sandbox.url + "outbox" if self.outbox is not None else None

    @property
    def events_url(self) -> str:
        return self.app_server.url + "slack/events"

    @property
    def bolt_app(self) -> Any:
        return getattr(self.wsgi, "bolt_app", None)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the work billbot does after each ack has finished."""
        return wait_until_idle(self.bolt_app, timeout)

    def stop(self) -> None:
        if self.clock is not None:
            self.clock.shutdown(wait=False)
        self.wait_idle(10)
        self.app_server.stop()
        self.sandbox.stop()
        runtime.reset()  # this process no longer talks to the sandbox
        for k, v in self._saved_env.items():
            if v is None:
                self._environ.pop(k, None)
            else:
                self._environ[k] = v
        _forget_settings()


def _forget_settings() -> None:
    get_settings.cache_clear()
    forget_clients()


def start_session(
    *,
    port: int = 0,
    sandbox_port: int = 0,
    host: str = "127.0.0.1",
    sandbox_db: str | Path | None = None,
    with_clock: bool = False,
    post_missing: bool = True,
    environ: MutableMapping[str, str] | None = None,
) -> SandboxSession:
    """Start the sandbox and billbot's app against it (ports 0 = free ports). See the module docstring."""
    env = os.environ if environ is None else environ
    db = context.get_db()
    settings = context.settings()
    path = sandbox_db if sandbox_db is not None else settings.var_dir / "sandbox.db"
    sandbox = start_sandbox(port=sandbox_port, host=host, db_path=path, users_provider=users_from_db(db))
    saved = {k: env.get(k) for k in ENV_KEYS}
    outbox = None
    try:
        if not (env.get("SMTP_URL") or settings.smtp_url):  # the user's own mail server wins
            outbox = Outbox(settings.var_dir / "outbox").start()
            sandbox.attach_outbox(outbox)  # stopped with the sandbox
            env["SMTP_URL"] = outbox.url
            if not (env.get("MAIL_FROM") or settings.mail_from):
                env["MAIL_FROM"] = SANDBOX_MAIL_FROM
        env["SLACK_BOT_TOKEN"] = sandbox.bot_token
        env["SLACK_SIGNING_SECRET"] = sandbox.signing_secret
        env["SLACK_API_URL"] = sandbox.api_url
        env.pop("SLACK_APP_TOKEN", None)  # the sandbox speaks HTTP, not Socket Mode
        _forget_settings()
        bolt = create_app(context.settings(), role="sandbox")
        wsgi = create_wsgi(app=bolt)
        app_server = serve_in_thread(wsgi, host=host, port=port, name="billbot-app")
    except BaseException:
        sandbox.stop()
        if outbox is not None:
            outbox.stop()
        for k, v in saved.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        _forget_settings()
        raise
    session = SandboxSession(sandbox=sandbox, app_server=app_server, wsgi=wsgi, outbox=outbox, _saved_env=saved,
                             _environ=env)
    sandbox.set_events_url(session.events_url)
    wiring = runtime.wiring()
    if post_missing and wiring is not None:
        session.posted = slack_exceptions.post_missing(wiring.slack)
    if with_clock and jobs.mode() != "distributed":  # there, the `clock` role sweeps
        session.clock = start_embedded(db)
    return session
