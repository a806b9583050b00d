"""What the Slack reactions need from the process they run in: a Web API client (or none, in a
process that does not talk to Slack), the database, the signing key and the channels.

:mod:`bot.runtime` builds one per process (``wire(role)``) and hands it to every reaction. The
getters are called at use: a job process that adopts a new environment (tests) gets the new
database, key and Slack API without being wired again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient

from storage.db import Database
from storage.settings import get_settings


@dataclass(frozen=True)
class SlackContext:
    get_client: Callable[[], WebClient | None]
    get_db: Callable[[], Database]
    get_key: Callable[[], Ed25519PrivateKey | None]

    @property
    def client(self) -> WebClient | None:
        return self.get_client()

    def db(self) -> Database:
        return self.get_db()

    def key(self) -> Ed25519PrivateKey | None:
        return self.get_key()

    @property
    def exceptions_channel(self) -> str:
        return get_settings().exceptions_channel

    @property
    def managers_channel(self) -> str:
        return get_settings().managers_channel
