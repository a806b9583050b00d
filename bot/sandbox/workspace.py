"""The sandbox workspace's state: channels, DMs, messages and threads, ephemerals, modals and App Homes,
uploaded files, trigger ids and response URLs.

Stored in SQLite (stdlib ``sqlite3``): a file under ``var/`` keeps message timestamps valid across restarts
(billbot stores the ``ts`` of every exception message and later calls ``chat.update`` on it), ``:memory:``
suits tests. One connection guarded by a lock: the sandbox is a single-user tool, a few requests a second.

Every change bumps :attr:`Workspace.version` and wakes :meth:`Workspace.wait_for_change`, which the page
long-polls, so a ``chat.update`` from billbot shows up in the browser within a fraction of a second.

Two options make the workspace the Slack stand-in of the test suite (``billbot serve --sandbox`` uses neither):

- ``deterministic``: timestamps count up from ``1700000001.000001``, ids from a counter (``V00000001``), a
  channel created by name gets an id derived from it (``billing-managers`` → ``CBILLINGMAN``) and a user's DM
  is ``"D" + user[1:]`` — so tests can name ids before they exist (for an in-memory workspace: the counters
  start afresh);
- ``open_ids``: ids chosen by the caller are accepted as Slack would accept ids of a bigger workspace:
  unknown channel ids (``CEXCEPTIONS``) are created on first use, replies to a thread parent the workspace
  never saw are kept, DMs, ephemerals and App Homes of users it does not know are stored, ``views.update`` of
  an unknown view id stores it, trigger ids and ``response_url``s it did not hand out are taken (the latter
  only recorded). ``users.info`` still answers ``user_not_found`` for unknown users.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "billbot-sandbox"
APP_ID = "A0BILLBOT"
BOT_USER_ID = "U0BILLBOT"
BOT_ID = "B0BILLBOT"
BOT_NAME = "billbot"

DEFAULT_CHANNELS = ("general", "billing-exceptions", "billing-managers")
# Real Slack expires trigger ids after 3 seconds; the sandbox allows more so a slow test machine is not flaky.
TRIGGER_TTL_SECONDS = 30.0
RESPONSE_URL_TTL_SECONDS = 30 * 60  # Slack: five uses within 30 minutes
RESPONSE_URL_MAX_USES = 5

DETERMINISTIC_EPOCH = 1_700_000_000

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_ID_RE = re.compile(r"^[CDG][A-Z0-9]{1,20}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, user_id TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, ts TEXT NOT NULL UNIQUE, thread_ts TEXT,
    user_id TEXT, bot_id TEXT, text TEXT NOT NULL DEFAULT '', blocks TEXT, attachments TEXT, files TEXT,
    edited_ts TEXT, ephemeral_for TEXT, sent_blocks TEXT, subtype TEXT, reply_broadcast INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_channel ON messages (channel, ts);
CREATE TABLE IF NOT EXISTS views (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, user_id TEXT NOT NULL,
    body TEXT NOT NULL, hash TEXT NOT NULL, root_view_id TEXT, previous_view_id TEXT, external_id TEXT,
    open INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, title TEXT, length INTEGER NOT NULL, content BLOB,
    channel TEXT, ts TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS triggers (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS response_urls (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, channel TEXT, user_id TEXT NOT NULL, message_ts TEXT,
    ephemeral INTEGER NOT NULL DEFAULT 0, uses INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL
);
"""


class SlackError(Exception):
    """A Web API error: ``{"ok": false, "error": code}`` (plus any extra fields)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass(frozen=True)
class SandboxUser:
    """A person of the sandbox workspace (from billbot's ``users`` table) or the bot itself."""

    id: str
    name: str
    email: str | None = None
    roles: tuple[str, ...] = ()
    is_bot: bool = False
    display: str | None = None  # the handle, when it is not the first name
    tz: str = "Europe/Berlin"

    @property
    def handle(self) -> str:
        if self.display:
            return self.display
        return self.name.split(" ")[0].lower() if self.name else self.id.lower()

    def as_slack(self) -> dict[str, Any]:
        """The ``user`` object of ``users.info`` / ``users.list``."""
        profile: dict[str, Any] = {
            "real_name": self.name,
            "display_name": self.handle,
            "real_name_normalized": self.name,
        }
        if self.email:
            profile["email"] = self.email
        if self.is_bot:
            profile["bot_id"] = BOT_ID
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.handle,
            "real_name": self.name,
            "deleted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "tz": self.tz,
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "profile": profile,
        }


BOT_USER = SandboxUser(id=BOT_USER_ID, name=BOT_NAME, is_bot=True)


@dataclass
class _Clock:
    """Strictly increasing Slack timestamps (``"1767225600.000100"``); ``deterministic``: ``n`` counts calls and
    the n-th timestamp is ``f"{1700000000 + n}.{n:06d}"``."""

    last: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    deterministic: bool = False

    def next(self) -> str:
        with self.lock:
            if self.deterministic:
                self.last += 1
                return f"{DETERMINISTIC_EPOCH + self.last}.{self.last:06d}"
            now = int(time.time() * 1_000_000)
            self.last = max(now, self.last + 1)
            return f"{self.last // 1_000_000}.{self.last % 1_000_000:06d}"


def _dumps(v: Any) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False)


def with_ids(blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Give every block a ``block_id`` and every interactive element an ``action_id``, as Slack does when it
    stores blocks that lack them (payloads then always name both)."""
    if blocks is None:
        return None
    out = []
    for given in blocks:
        b = json.loads(json.dumps(given))  # a copy: the caller's blocks stay as they were
        if isinstance(b, dict):
            b.setdefault("block_id", secrets.token_urlsafe(4))
            els = list(b.get("elements", [])) if b.get("type") == "actions" else []
            els += [e for e in (b.get("accessory"), b.get("element")) if isinstance(e, dict)]
            for el in els:
                if isinstance(el, dict) and el.get("type") not in (None, "image", "plain_text", "mrkdwn"):
                    el.setdefault("action_id", secrets.token_urlsafe(4))
        out.append(b)
    return out


def _loads(v: str | None) -> Any:
    return None if v is None else json.loads(v)


class Workspace:
    """All state of one sandbox workspace. Methods raise :class:`SlackError` with Slack's error codes."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        users_provider: Callable[[], Iterable[SandboxUser]] | None = None,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        deterministic: bool = False,
        open_ids: bool = False,
        team_id: str = TEAM_ID,
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.version = 0
        self.closed = False
        self._users_provider = users_provider
        self._users: dict[str, SandboxUser] = {}
        self.team_id = team_id  # what auth.test answers; the page's own payloads always name TEAM_ID
        self.deterministic = deterministic
        self.open_ids = open_ids
        self._clock = _Clock(deterministic=deterministic)
        self._ids = itertools.count(1)
        with self._lock:
            self._conn.executescript(SCHEMA)
            columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(messages)")}
            if "sent_blocks" not in columns:  # a workspace file from before the column
                self._conn.execute("ALTER TABLE messages ADD COLUMN sent_blocks TEXT")
            last = self._conn.execute("SELECT max(CAST(ts AS REAL)) FROM messages").fetchone()[0]
            if last and not deterministic:
                self._clock.last = int(float(last) * 1_000_000)
            for name in channels:
                self._ensure_channel(name)
        self.refresh_users()

    def close(self) -> None:
        """Close the store; long-polls still waiting are woken (and the server answers 503 from now on)."""
        with self._lock:
            self.closed = True
            self._changed.notify_all()
            self._conn.close()

    # --- change notification -------------------------------------------------------------------------------

    def _bump(self) -> None:
        self.version += 1
        self._changed.notify_all()

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until :attr:`version` differs from ``since`` (or ``timeout`` seconds); return the version."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != since or self.closed, timeout=timeout)
            return self.version

    # --- users ----------------------------------------------------------------------------------------------

    def refresh_users(self) -> None:
        users = list(self._users_provider()) if self._users_provider else list(self._users.values())
        with self._lock:
            self._users = {u.id: u for u in users if not u.is_bot}
            self._bump()

    def set_users(self, users: Iterable[SandboxUser]) -> None:
        with self._lock:
            self._users = {u.id: u for u in users}
            self._bump()

    def users(self) -> list[SandboxUser]:
        with self._lock:
            return sorted(self._users.values(), key=lambda u: (u.name.lower(), u.id))

    def _check_user(self, user_id: str) -> None:
        """Unknown users are ``user_not_found`` — unless the workspace takes caller-chosen ids (``open_ids``)."""
        if not self.open_ids:
            self.user(user_id)

    def user(self, user_id: str) -> SandboxUser:
        if user_id == BOT_USER_ID:
            return BOT_USER
        if user_id not in self._users:
            self.refresh_users()
        try:
            return self._users[user_id]
        except KeyError:
            raise SlackError("user_not_found") from None

    # --- channels -------------------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        if self.deterministic:
            return f"{prefix}{next(self._ids):08d}"
        return prefix + secrets.token_hex(5).upper()

    def _taken(self, channel_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM channels WHERE id = ?", (channel_id,)).fetchone() is not None

    def _ensure_channel(self, name: str, channel_id: str | None = None) -> dict[str, Any]:
        row = self._conn.execute("SELECT * FROM channels WHERE name = ?", (name,)).fetchone()
        if row is None:
            if channel_id is not None:
                cid = channel_id
            elif self.deterministic:
                cid = "C" + re.sub(r"[^A-Z0-9]", "", name.upper())[:10]
                if self._taken(cid):
                    cid = self._new_id("C")
            else:
                cid = self._new_id("C")
            self._conn.execute(
                "INSERT INTO channels (id, name, kind, created) VALUES (?, ?, 'channel', ?)", (cid, name, time.time())
            )
            row = self._conn.execute("SELECT * FROM channels WHERE id = ?", (cid,)).fetchone()
        return dict(row)

    def open_im(self, user_id: str) -> dict[str, Any]:
        """The DM between the bot and ``user_id`` (created on first use)."""
        self._check_user(user_id)
        with self._lock:
            row = self._conn.execute("SELECT * FROM channels WHERE kind = 'im' AND user_id = ?", (user_id,)).fetchone()
            if row is None:
                cid = "D" + user_id[1:] if self.deterministic else self._new_id("D")
                if self._taken(cid):  # named by a caller before (open_ids): it becomes the DM
                    self._conn.execute(
                        "UPDATE channels SET kind = 'im', user_id = ?, name = ? WHERE id = ?",
                        (user_id, f"dm-{user_id.lower()}", cid),
                    )
                    self._bump()
                    return dict(self._conn.execute("SELECT * FROM channels WHERE id = ?", (cid,)).fetchone())
                self._conn.execute(
                    "INSERT INTO channels (id, name, kind, user_id, created) VALUES (?, ?, 'im', ?, ?)",
                    (cid, f"dm-{user_id.lower()}", user_id, time.time()),
                )
                row = self._conn.execute("SELECT * FROM channels WHERE id = ?", (cid,)).fetchone()
                self._bump()
            return dict(row)

    def channel(self, ref: str, *, create: bool = True) -> dict[str, Any]:
        """Resolve a channel id (``C…``/``D…``), a name (``billing-exceptions`` or ``#billing-exceptions``) or a
        user id (``U…``: the bot's DM with that user, as ``chat.postMessage`` allows). Unknown names are created
        (the sandbox bot is in every channel); unknown ids are ``channel_not_found``."""
        if not ref:
            raise SlackError("channel_not_found")
        with self._lock:
            row = self._conn.execute("SELECT * FROM channels WHERE id = ?", (ref,)).fetchone()
            if row is not None:
                return dict(row)
            if ref[0] in "UW" and ref[1:].isalnum() and ref.upper() == ref:
                return self.open_im(ref)
            name = ref.lstrip("#")
            row = self._conn.execute("SELECT * FROM channels WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return dict(row)
            if create and _NAME_RE.match(name):
                ch = self._ensure_channel(name)
                self._bump()
                return ch
            if self.open_ids and _ID_RE.match(ref):
                ch = self._ensure_channel(ref.lower(), channel_id=ref)
                self._bump()
                return ch
            raise SlackError("channel_not_found")

    def channels(self, kinds: Iterable[str] = ("channel", "im")) -> list[dict[str, Any]]:
        kinds = tuple(kinds)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM channels WHERE kind IN ({','.join('?' * len(kinds))}) ORDER BY kind, name", kinds
            ).fetchall()
            return [dict(r) for r in rows]

    @staticmethod
    def channel_as_slack(ch: dict[str, Any]) -> dict[str, Any]:
        if ch["kind"] == "im":
            return {
                "id": ch["id"],
                "is_im": True,
                "is_channel": False,
                "user": ch["user_id"],
                "created": int(ch["created"]),
            }
        return {
            "id": ch["id"],
            "name": ch["name"],
            "name_normalized": ch["name"],
            "is_channel": True,
            "is_im": False,
            "is_private": False,
            "is_archived": False,
            "is_member": True,
            "created": int(ch["created"]),
        }

    # --- messages -------------------------------------------------------------------------------------------

    def _message(self, row: sqlite3.Row) -> dict[str, Any]:
        m: dict[str, Any] = {"type": "message", "ts": row["ts"], "text": row["text"]}
        if row["bot_id"]:
            m.update(bot_id=row["bot_id"], app_id=APP_ID, user=BOT_USER_ID, username=BOT_NAME)
        else:
            m["user"] = row["user_id"]
        m["team"] = self.team_id
        if row["subtype"]:
            m["subtype"] = row["subtype"]
        for key in ("blocks", "attachments", "files"):
            if row[key] is not None:
                m[key] = _loads(row[key])
        if row["thread_ts"]:
            m["thread_ts"] = row["thread_ts"]
        if row["edited_ts"]:
            m["edited"] = {"user": m["user"], "ts": row["edited_ts"]}
        if row["ephemeral_for"]:
            m["ephemeral_for"] = row["ephemeral_for"]
        if not row["thread_ts"] or row["thread_ts"] == row["ts"]:
            replies = self._conn.execute(
                "SELECT count(*), max(ts) FROM messages WHERE channel = ? AND thread_ts = ? AND ts != ? "
                "AND deleted = 0 AND ephemeral_for IS NULL",
                (row["channel"], row["ts"], row["ts"]),
            ).fetchone()
            if replies[0]:
                m.update(thread_ts=row["ts"], reply_count=replies[0], latest_reply=replies[1])
        return m

    def post_message(
        self,
        channel: str,
        *,
        text: str = "",
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        files: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        user: str | None = None,
        reply_broadcast: bool = False,
        subtype: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Post as the bot (``user=None``) or as a person; return ``(channel_id, message)``."""
        with self._lock:
            ch = self.channel(channel)
            if thread_ts:
                parent = self._row(ch["id"], thread_ts)
                if parent is None and not self.open_ids:
                    raise SlackError("thread_not_found")
                if parent is not None:
                    thread_ts = parent["thread_ts"] or parent["ts"]
            ts = self._clock.next()
            self._conn.execute(
                "INSERT INTO messages (channel, ts, thread_ts, user_id, bot_id, text, blocks, sent_blocks, "
                "attachments, files, subtype, reply_broadcast) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ch["id"],
                    ts,
                    thread_ts,
                    user or BOT_USER_ID,
                    None if user else BOT_ID,
                    text or "",
                    _dumps(with_ids(blocks)),
                    _dumps(blocks),
                    _dumps(attachments),
                    _dumps(files),
                    subtype,
                    int(reply_broadcast),
                ),
            )
            self._bump()
            return ch["id"], self._message(self._must_row(ch["id"], ts))

    def _row(self, channel: str, ts: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM messages WHERE channel = ? AND ts = ? AND deleted = 0", (channel, ts)
        ).fetchone()
        return row

    def _must_row(self, channel: str, ts: str) -> sqlite3.Row:
        row = self._row(channel, ts)
        if row is None:
            raise SlackError("message_not_found")
        return row

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            ch = self.channel(channel, create=False)
            return self._message(self._must_row(ch["id"], ts))

    def all_messages(self, *, as_sent: bool = False) -> list[dict[str, Any]]:
        """Every message (not ephemeral, not deleted) of every channel, oldest first, each with its
        ``channel`` and the raw ``thread_ts`` it was posted with (``None`` for a top-level message).
        ``as_sent``: blocks as the app sent them, without the ``block_id``/``action_id`` Slack adds."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM messages WHERE deleted = 0 AND ephemeral_for IS NULL ORDER BY seq"
            ).fetchall()
            out = []
            for r in rows:
                m = {**self._message(r), "channel": r["channel"], "thread_ts": r["thread_ts"]}
                if as_sent and r["blocks"] is not None:
                    m["blocks"] = _loads(r["sent_blocks"])
                out.append(m)
            return out

    def update_message(
        self,
        channel: str,
        ts: str,
        *,
        text: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        as_bot: bool = True,
    ) -> tuple[str, dict[str, Any]]:
        """``chat.update``: only the bot's own messages; omitted fields keep their value (as Slack does)."""
        with self._lock:
            ch = self.channel(channel, create=False)
            row = self._must_row(ch["id"], ts)
            if as_bot and not row["bot_id"]:
                raise SlackError("cant_update_message")
            self._conn.execute(
                "UPDATE messages SET text = ?, blocks = ?, sent_blocks = ?, attachments = ?, edited_ts = ? "
                "WHERE ts = ?",
                (
                    row["text"] if text is None else text,
                    row["blocks"] if blocks is None else _dumps(with_ids(blocks)),
                    row["sent_blocks"] if blocks is None else _dumps(blocks),
                    row["attachments"] if attachments is None else _dumps(attachments),
                    self._clock.next(),
                    ts,
                ),
            )
            self._bump()
            return ch["id"], self._message(self._must_row(ch["id"], ts))

    def delete_message(self, channel: str, ts: str, *, as_bot: bool = True) -> str:
        with self._lock:
            ch = self.channel(channel, create=False)
            row = self._must_row(ch["id"], ts)
            if as_bot and not row["bot_id"]:
                raise SlackError("cant_delete_message")
            self._conn.execute("UPDATE messages SET deleted = 1 WHERE ts = ?", (ts,))
            self._bump()
            return str(ch["id"])

    def post_ephemeral(
        self,
        channel: str,
        user: str,
        *,
        text: str = "",
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        subtype: str | None = None,
        from_user: str | None = None,
    ) -> tuple[str, str]:
        """A message only ``user`` sees, in ``channel``; return ``(channel_id, message_ts)``."""
        self._check_user(user)
        with self._lock:
            ch = self.channel(channel)
            ts = self._clock.next()
            self._conn.execute(
                "INSERT INTO messages (channel, ts, thread_ts, user_id, bot_id, text, blocks, attachments, "
                "ephemeral_for, subtype) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ch["id"],
                    ts,
                    thread_ts,
                    from_user or BOT_USER_ID,
                    None if from_user else BOT_ID,
                    text or "",
                    _dumps(with_ids(blocks)),
                    _dumps(attachments),
                    user,
                    subtype,
                ),
            )
            self._bump()
            return str(ch["id"]), ts

    def replace_ephemeral(self, ts: str, *, text: str, blocks: list[dict[str, Any]] | None) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE messages SET text = ?, blocks = ?, edited_ts = ? WHERE ts = ? AND ephemeral_for IS NOT NULL",
                (text, _dumps(with_ids(blocks)), self._clock.next(), ts),
            )
            self._bump()

    def delete_ephemeral(self, ts: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE messages SET deleted = 1 WHERE ts = ? AND ephemeral_for IS NOT NULL", (ts,))
            self._bump()

    def ephemeral(self, ts: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM messages WHERE ts = ? AND ephemeral_for IS NOT NULL AND deleted = 0", (ts,)
            ).fetchone()
            return None if row is None else self._message(row)

    def history(
        self,
        channel: str,
        *,
        limit: int = 100,
        latest: str | None = None,
        oldest: str | None = None,
        inclusive: bool = False,
        viewer: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Top-level messages (and broadcast replies), newest first; ``viewer`` also sees their ephemerals."""
        with self._lock:
            ch = self.channel(channel, create=False)
            lt, gt = ("<=", ">=") if inclusive else ("<", ">")
            where = ["channel = ?", "deleted = 0", "(thread_ts IS NULL OR thread_ts = ts OR reply_broadcast = 1)"]
            args: list[Any] = [ch["id"]]
            if viewer:
                where.append("(ephemeral_for IS NULL OR ephemeral_for = ?)")
                args.append(viewer)
            else:
                where.append("ephemeral_for IS NULL")
            if latest:
                where.append(f"CAST(ts AS REAL) {lt} ?")
                args.append(float(latest))
            if oldest:
                where.append(f"CAST(ts AS REAL) {gt} ?")
                args.append(float(oldest))
            rows = self._conn.execute(
                f"SELECT * FROM messages WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", [*args, limit + 1]
            ).fetchall()
            return [self._message(r) for r in rows[:limit]], len(rows) > limit

    def replies(self, channel: str, ts: str, *, viewer: str | None = None) -> list[dict[str, Any]]:
        """The thread of ``ts``: its parent first, then replies oldest first."""
        with self._lock:
            ch = self.channel(channel, create=False)
            parent = self._row(ch["id"], ts)
            if parent is None:
                raise SlackError("thread_not_found")
            root = parent["thread_ts"] or parent["ts"]
            rows = self._conn.execute(
                "SELECT * FROM messages WHERE channel = ? AND deleted = 0 AND (ts = ? OR thread_ts = ?) "
                "AND (ephemeral_for IS NULL OR ephemeral_for = ?) ORDER BY seq",
                (ch["id"], root, root, viewer or ""),
            ).fetchall()
            return [self._message(r) for r in rows]

    # --- triggers and response URLs -------------------------------------------------------------------------

    def new_trigger(self, user: str) -> str:
        tid = f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        with self._lock:
            self._conn.execute("INSERT INTO triggers (id, user_id, created) VALUES (?, ?, ?)", (tid, user, time.time()))
        return tid

    def use_trigger(self, trigger_id: str) -> str:
        """The user a trigger id was issued to; each trigger opens one view, within its time to live."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM triggers WHERE id = ?", (trigger_id or "",)).fetchone()
            if row is None and self.open_ids and trigger_id:
                return ""  # a trigger id made up by a test's "user": nobody known opened the view
            if row is None:
                raise SlackError("invalid_trigger_id")
            self._conn.execute("DELETE FROM triggers WHERE id = ?", (trigger_id,))
            if time.time() - row["created"] > TRIGGER_TTL_SECONDS:
                raise SlackError("expired_trigger_id")
            return str(row["user_id"])

    def new_response_url_token(
        self, kind: str, *, user: str, channel: str | None, message_ts: str | None = None, ephemeral: bool = False
    ) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._conn.execute(
                "INSERT INTO response_urls (token, kind, channel, user_id, message_ts, ephemeral, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token, kind, channel, user, message_ts, int(ephemeral), time.time()),
            )
        return token

    def use_response_url(self, token: str) -> dict[str, Any] | None:
        """What a ``response_url`` answers; ``None`` for a URL the workspace did not hand out (``open_ids``)."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM response_urls WHERE token = ?", (token,)).fetchone()
            if row is None:
                if self.open_ids:
                    return None
                raise SlackError("invalid_response_url")
            if time.time() - row["created"] > RESPONSE_URL_TTL_SECONDS:
                raise SlackError("expired_url")
            if row["uses"] >= RESPONSE_URL_MAX_USES:
                raise SlackError("used_url")
            self._conn.execute("UPDATE response_urls SET uses = uses + 1 WHERE token = ?", (token,))
            return dict(row)

    # --- views (modals and App Home) ------------------------------------------------------------------------

    def _view(self, row: sqlite3.Row, state: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.loads(row["body"])
        view: dict[str, Any] = {
            "id": row["id"],
            "team_id": self.team_id,
            "type": row["type"],
            "blocks": body.get("blocks", []),
            "private_metadata": body.get("private_metadata", ""),
            "callback_id": body.get("callback_id", ""),
            "state": {"values": state or {}},
            "hash": row["hash"],
            "clear_on_close": bool(body.get("clear_on_close", False)),
            "notify_on_close": bool(body.get("notify_on_close", False)),
            "close": body.get("close"),
            "submit": body.get("submit"),
            "title": body.get("title"),
            "root_view_id": row["root_view_id"] or row["id"],
            "previous_view_id": row["previous_view_id"],
            "app_id": APP_ID,
            "external_id": row["external_id"] or "",
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        }
        return view

    def _insert_view(
        self,
        vtype: str,
        user: str,
        view: dict[str, Any],
        *,
        root: str | None = None,
        previous: str | None = None,
        view_id: str | None = None,
    ) -> dict[str, Any]:
        vid = view_id or self._new_id("V")
        external_id = view.get("external_id") or None
        if external_id and self._conn.execute("SELECT 1 FROM views WHERE external_id = ?", (external_id,)).fetchone():
            raise SlackError("duplicate_external_id")
        self._conn.execute(
            "INSERT INTO views (id, type, user_id, body, hash, root_view_id, previous_view_id, external_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                vid,
                vtype,
                user,
                json.dumps({**view, "blocks": with_ids(view.get("blocks", []))}),
                secrets.token_hex(8),
                root,
                previous,
                external_id,
            ),
        )
        self._bump()
        return self._view(self._conn.execute("SELECT * FROM views WHERE id = ?", (vid,)).fetchone())

    def open_modal(self, user: str, view: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._conn.execute("UPDATE views SET open = 0 WHERE user_id = ? AND type = 'modal'", (user,))
            return self._insert_view("modal", user, view)

    def push_modal(self, user: str, view: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            stack = self.modal_stack(user)
            if not stack:
                raise SlackError("not_found")  # views.push needs an open modal
            if len(stack) >= 3:
                raise SlackError("push_limit_reached")
            top = stack[-1]
            return self._insert_view("modal", user, view, root=top["root_view_id"], previous=top["id"])

    def _find_view(self, view_id: str | None, external_id: str | None) -> sqlite3.Row:
        if view_id:
            row = self._conn.execute("SELECT * FROM views WHERE id = ?", (view_id,)).fetchone()
        elif external_id:
            row = self._conn.execute("SELECT * FROM views WHERE external_id = ?", (external_id,)).fetchone()
        else:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["view_id or external_id"]})
        if row is None:
            raise SlackError("not_found")
        return row  # type: ignore[no-any-return]

    def view(self, view_id: str) -> dict[str, Any]:
        with self._lock:
            return self._view(self._find_view(view_id, None))

    def view_owner(self, view_id: str) -> str:
        with self._lock:
            return str(self._find_view(view_id, None)["user_id"])

    def update_view(
        self,
        view: dict[str, Any],
        *,
        view_id: str | None = None,
        external_id: str | None = None,
        hash: str | None = None,
    ) -> dict[str, Any]:
        """``views.update``: a stale ``hash`` is ``hash_conflict`` (someone else updated the view meanwhile)."""
        with self._lock:
            if self.open_ids and view_id and not external_id:
                known = self._conn.execute("SELECT 1 FROM views WHERE id = ?", (view_id,)).fetchone()
                if known is None:  # a view id made up by a test's payload: stored as it is updated
                    return self._insert_view(str(view.get("type") or "modal"), "", view, view_id=view_id)
            row = self._find_view(view_id, external_id)
            if hash and hash != row["hash"] and not self.open_ids:
                raise SlackError("hash_conflict")
            if row["type"] != view.get("type", row["type"]):
                raise SlackError("invalid_arguments", response_metadata={"messages": ["view type cannot change"]})
            self._conn.execute(
                "UPDATE views SET body = ?, hash = ? WHERE id = ?",
                (json.dumps({**view, "blocks": with_ids(view.get("blocks", []))}), secrets.token_hex(8), row["id"]),
            )
            self._bump()
            return self._view(self._conn.execute("SELECT * FROM views WHERE id = ?", (row["id"],)).fetchone())

    def publish_home(self, user: str, view: dict[str, Any], *, hash: str | None = None) -> dict[str, Any]:
        self._check_user(user)
        with self._lock:
            row = self._conn.execute("SELECT * FROM views WHERE user_id = ? AND type = 'home'", (user,)).fetchone()
            if row is None:
                return self._insert_view("home", user, view)
            return self.update_view(view, view_id=row["id"], hash=hash)

    def home(self, user: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM views WHERE user_id = ? AND type = 'home'", (user,)).fetchone()
            return None if row is None else self._view(row)

    def modal_stack(self, user: str) -> list[dict[str, Any]]:
        """The user's open modals, bottom first (the last one is shown)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM views WHERE user_id = ? AND type = 'modal' AND open = 1 ORDER BY seq", (user,)
            ).fetchall()
            return [self._view(r) for r in rows]

    def close_modal(self, view_id: str, *, all_: bool = False) -> None:
        """Close one modal (and everything pushed above it) or, with ``all_``, the user's whole stack."""
        with self._lock:
            row = self._find_view(view_id, None)
            if all_:
                self._conn.execute("UPDATE views SET open = 0 WHERE user_id = ? AND type = 'modal'", (row["user_id"],))
            else:
                self._conn.execute(
                    "UPDATE views SET open = 0 WHERE user_id = ? AND type = 'modal' AND seq >= ?",
                    (row["user_id"], row["seq"]),
                )
            self._bump()

    # --- files ----------------------------------------------------------------------------------------------

    def new_file(self, filename: str, length: int) -> str:
        fid = self._new_id("F")
        with self._lock:
            self._conn.execute(
                "INSERT INTO files (id, name, length, created) VALUES (?, ?, ?, ?)",
                (fid, filename, length, time.time()),
            )
        return fid

    def upload_file(self, file_id: str, content: bytes) -> None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise SlackError("file_not_found")
            self._conn.execute(
                "UPDATE files SET content = ?, length = ? WHERE id = ?", (content, len(content), file_id)
            )

    def uploads(self) -> dict[str, bytes]:
        """The content of every uploaded file, by file id, in upload order."""
        with self._lock:
            rows = self._conn.execute("SELECT id, content FROM files WHERE content IS NOT NULL ORDER BY created, id")
            return {str(r["id"]): bytes(r["content"]) for r in rows.fetchall()}

    def file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise SlackError("file_not_found")
            return dict(row)

    @staticmethod
    def file_as_slack(f: dict[str, Any], base_url: str = "") -> dict[str, Any]:
        return {
            "id": f["id"],
            "name": f["name"],
            "title": f["title"] or f["name"],
            "size": f["length"],
            "mimetype": _mimetype(f["name"]),
            "url_private": f"{base_url}files/{f['id']}/{f['name']}",
            "url_private_download": f"{base_url}files/{f['id']}/{f['name']}",
        }

    def complete_upload(
        self,
        files: list[dict[str, Any]],
        *,
        channel: str | None,
        initial_comment: str | None,
        thread_ts: str | None,
        base_url: str = "",
    ) -> list[dict[str, Any]]:
        """``files.completeUploadExternal``: every file must have been uploaded; shares them in one message."""
        with self._lock:
            shown = []
            for f in files:
                row = self.file(str(f.get("id", "")))
                if row["content"] is None:
                    raise SlackError("file_not_found")
                self._conn.execute(
                    "UPDATE files SET title = ? WHERE id = ?", (f.get("title") or row["name"], row["id"])
                )
                shown.append(self.file_as_slack(self.file(row["id"]), base_url))
            if channel:
                ch_id, msg = self.post_message(
                    channel, text=initial_comment or "", files=shown, thread_ts=thread_ts, subtype="file_share"
                )
                for f in shown:
                    self._conn.execute("UPDATE files SET channel = ?, ts = ? WHERE id = ?", (ch_id, msg["ts"], f["id"]))
            return shown


def _mimetype(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"
