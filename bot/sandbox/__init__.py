"""The local sandbox workspace: a small Slack stand-in on 127.0.0.1 so billbot can be tried without Slack.

- :mod:`bot.sandbox.workspace` stores channels, messages, ephemerals, views and files (SQLite file or memory).
- :mod:`bot.sandbox.webapi` answers the subset of the Slack Web API billbot calls, through slack_sdk's
  ``base_url`` — the same code path as real Slack.
- :mod:`bot.sandbox.forward` turns clicks, modal submissions and ``/billing`` commands typed in the page into
  **signed** Slack payloads posted to billbot's real ``/slack/events`` endpoint.
- :mod:`bot.sandbox.server` serves both plus the single-page UI (``static/``) on a threaded WSGI server.
"""

from __future__ import annotations

from bot.sandbox.server import SandboxServer, start_sandbox
from bot.sandbox.workspace import SandboxUser, Workspace

__all__ = ["SandboxServer", "SandboxUser", "Workspace", "start_sandbox"]
