"""The sandbox's Outbox (issue 19): a local SMTP server started with the sandbox, so that the invoice mails
billbot sends in ``make run`` / ``billbot serve --sandbox`` land somewhere a newcomer can read them.

- :class:`Outbox` runs an SMTP server (aiosmtpd) on 127.0.0.1 and keeps every mail it is given as an
  ``.eml`` file in a folder (``var/outbox/`` in a session: the mails of an earlier ``make run`` stay
  visible, since an invoice already sent is never sent again). It accepts every sender and recipient and
  delivers nothing further.
- :func:`route` serves the page ``/outbox`` (each mail: date, from, to, cc, subject, attachments with a
  download link, body), ``/outbox/<mail>/<n>`` (an attachment) and ``/sandbox/outbox`` (the same as JSON).

:mod:`bot.sandbox.session` starts it and points ``SMTP_URL`` at it unless the user set one, and stops it
with the sandbox.
"""

from __future__ import annotations

import email
import html
import json
import logging
import re
import socket
import threading
import time
from email.message import EmailMessage
from email.policy import default
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the ``From`` of billbot's mails in a sandbox where ``MAIL_FROM`` is not set
SANDBOX_MAIL_FROM = "billbot sandbox <billing@sandbox.localhost>"
_MAIL_ID = re.compile(r"^[0-9]+-[0-9]+$")

Response = tuple[str, list[tuple[str, str]], bytes]


class _Handler:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        self.outbox.keep(bytes(envelope.content), mail_from=str(envelope.mail_from or ""),
                         rcpt_tos=[str(r) for r in envelope.rcpt_tos])
        return "250 Message accepted for delivery"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Outbox:
    """An SMTP server on ``host`` that keeps each mail in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1") -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = 0
        self._controller: Any = None
        self._lock = threading.Lock()
        self._seq = 0

    @property
    def url(self) -> str:
        """What billbot's ``SMTP_URL`` must be."""
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self, port: int = 0) -> Outbox:
        from aiosmtpd.controller import Controller

        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port(self.host)
        controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        log.info("sandbox outbox (SMTP) at %s, mails kept in %s", self.url, self.directory)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def keep(self, data: bytes, *, mail_from: str, rcpt_tos: list[str]) -> Path:
        """Store one received mail (written to a temporary name, then renamed: a reader never sees half)."""
        with self._lock:
            self._seq += 1
            name = f"{time.time_ns()}-{self._seq}"
        envelope = f"X-Outbox-Mail-From: {mail_from}\r\nX-Outbox-Rcpt-To: {', '.join(rcpt_tos)}\r\n".encode()
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(envelope + data)
        path = self.directory / f"{name}.eml"
        tmp.replace(path)
        return path

    def _message(self, mail_id: str) -> EmailMessage:
        if not _MAIL_ID.match(mail_id) or not (self.directory / f"{mail_id}.eml").is_file():
            raise KeyError(mail_id)
        return email.message_from_bytes((self.directory / f"{mail_id}.eml").read_bytes(),
                                        policy=default)

    def mails(self) -> list[dict[str, Any]]:
        """Every kept mail, newest first: ``id``, ``from``, ``to``, ``cc``, ``subject``, ``date`` (ISO 8601),
        ``message_id``, ``attachments`` (``name``, ``content_type``, ``size``) and ``body`` (the text part)."""
        if not self.directory.is_dir():
            return []
        ids = sorted((p.stem for p in self.directory.glob("*.eml")),
                     key=lambda s: tuple(int(x) for x in s.split("-")), reverse=True)
        return [_summary(i, self._message(i)) for i in ids]

    def attachment(self, mail_id: str, index: int) -> tuple[str, str, bytes]:
        """(file name, content type, bytes) of a mail's ``index``-th attachment (0-based)."""
        parts = list(self._message(mail_id).iter_attachments())
        if not 0 <= index < len(parts):
            raise KeyError(index)
        part = parts[index]
        payload = part.get_payload(decode=True)
        return (part.get_filename() or f"attachment-{index + 1}", part.get_content_type(),
                payload if isinstance(payload, bytes) else b"")


def _addresses(value: Any) -> list[str]:
    return [a.strip() for a in str(value or "").split(",") if a.strip()]


def _summary(mail_id: str, msg: EmailMessage) -> dict[str, Any]:
    date = None
    if msg["Date"]:
        try:
            date = parsedate_to_datetime(str(msg["Date"])).isoformat()
        except (TypeError, ValueError):
            date = str(msg["Date"])
    body_part = msg.get_body(preferencelist=("plain", "html"))
    body = body_part.get_content() if body_part is not None else ""
    attachments = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        attachments.append({"name": part.get_filename() or "", "content_type": part.get_content_type(),
                            "size": len(payload) if isinstance(payload, bytes) else 0})
    return {"id": mail_id, "from": str(msg["From"] or msg["X-Outbox-Mail-From"] or ""),
            "to": _addresses(msg["To"]), "cc": _addresses(msg["Cc"]),
            "envelope_to": _addresses(msg["X-Outbox-Rcpt-To"]), "subject": str(msg["Subject"] or ""),
            "date": date, "message_id": str(msg["Message-ID"] or ""), "attachments": attachments,
            "body": str(body)}


# --------------------------------------------------------------------------- HTTP


TITLE = "Outbox — billbot sandbox"
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1c1d; background: #f8f8f8;
       margin: 0; }
.outbox { max-width: 980px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 22px; } .outbox-count { font-size: 14px; font-weight: normal; color: #616061; margin-left: 8px; }
.outbox-intro { color: #616061; }
.outbox-mail { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px 16px; margin: 12px 0; }
.outbox-mail h2 { font-size: 16px; margin: 0 0 8px 0; }
.outbox-head th { text-align: left; color: #616061; font-weight: normal; padding-right: 12px; vertical-align: top; }
.outbox-body { white-space: pre-wrap; background: #f4f4f4; padding: 8px; border-radius: 4px; font-size: 13px; }
a { color: #1264a3; }
"""


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} B"


def page_html(outbox: Outbox | None) -> str:
    """The Outbox page: one block per mail, newest first (plain HTML, no script)."""
    e = html.escape
    mails = outbox.mails() if outbox is not None else []
    if outbox is None:
        intro = ("No local mail server in this sandbox: SMTP_URL was set, so billbot mails through that server "
                 "and its mails are not kept here.")
    else:
        intro = (f"The mails billbot sent through the sandbox's mail server ({e(outbox.url)}), newest first. "
                 "Nothing leaves this machine.")
    out = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{TITLE}</title>",
           f"<style>{STYLE}</style></head>",
           "<body class=\"outbox-page\"><main class=\"outbox\" data-testid=\"outbox\">",
           "<p><a href=\"/\" data-testid=\"back-to-workspace\">← back to the workspace</a> · "
           "<a href=\"/outbox\">reload</a></p>",
           f"<h1>Outbox <span class=\"outbox-count\" data-testid=\"outbox-count\">{len(mails)} mail(s)</span></h1>",
           f"<p class=\"outbox-intro\">{intro}</p>"]
    if outbox is not None and not mails:
        out.append("<p data-testid=\"outbox-empty\">No mails yet. Invoice mails are sent after their PDF is "
                   "rendered; they appear here (reload the page).</p>")
    for m in mails:
        atts = "".join(
            f"<li><a href=\"/outbox/{e(m['id'])}/{i}\" data-testid=\"outbox-attachment\">{e(a['name'])}</a> "
            f"({e(a['content_type'])}, {_size(a['size'])})</li>" for i, a in enumerate(m["attachments"]))
        rows = [("From", m["from"]), ("To", ", ".join(m["to"])), ("Cc", ", ".join(m["cc"])),
                ("Date", m["date"] or ""), ("Message-ID", m["message_id"])]
        head = "".join(f"<tr><th>{k}</th><td data-testid=\"outbox-{k.lower()}\">{e(v)}</td></tr>"
                       for k, v in rows if v)
        out.append(
            f"<article class=\"outbox-mail\" data-testid=\"outbox-mail\" id=\"mail-{e(m['id'])}\">"
            f"<h2 data-testid=\"outbox-subject\">{e(m['subject'])}</h2><table class=\"outbox-head\">{head}</table>"
            + (f"<div>Attachments:<ul>{atts}</ul></div>" if atts else "<div>No attachments.</div>")
            + f"<pre class=\"outbox-body\" data-testid=\"outbox-body\">{e(m['body'])}</pre></article>")
    out.append("</main></body></html>")
    return "".join(out)


def route(outbox: Outbox | None, method: str, path: str) -> Response | None:
    """The Outbox's part of the sandbox's HTTP surface; None for a path that is not the Outbox's."""
    if method != "GET":
        return None
    if path in ("/outbox", "/outbox/"):
        return "200 OK", [("Content-Type", "text/html; charset=utf-8")], page_html(outbox).encode()
    if path == "/sandbox/outbox":
        listing = {"smtp_url": outbox.url if outbox is not None else None,
                   "mails": outbox.mails() if outbox is not None else []}
        return "200 OK", [("Content-Type", "application/json; charset=utf-8")], json.dumps(listing).encode()
    m = re.fullmatch(r"/outbox/([0-9]+-[0-9]+)/([0-9]{1,3})", path)
    if m and outbox is not None:
        try:
            name, ctype, data = outbox.attachment(m.group(1), int(m.group(2)))
        except KeyError:
            return "404 Not Found", [("Content-Type", "text/plain")], b"no such attachment"
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        return "200 OK", [("Content-Type", ctype), ("Content-Disposition", f"inline; filename=\"{safe}\"")], data
    return None
