"""`billbot serve`: the Slack app (HTTP or Socket Mode); the local sandbox workspace without Slack credentials."""

from __future__ import annotations
