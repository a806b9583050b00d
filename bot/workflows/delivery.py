"""Invoice PDFs delivered into Slack threads, and the after-commit wiring that renders them.

Only invoices finalized *from Slack* are uploaded, into the thread they were asked for in:

- a Force on a ``below_threshold`` skip → the exception message's thread (hook
  :func:`deliver_to_exception_thread`, set through ``notify_slack.set_invoice_delivery``; it also
  posts the "Invoice(s) created: …" reply it replaces);
- ``/billing run`` typed in Slack → the run's progress message thread (:func:`deliver_run`, called by
  the ``slack_command`` job when the run is done), capped at :data:`RUN_UPLOAD_CAP` PDFs plus one
  "… and N more" reply, so a run of 1,000 invoices does not flood the thread.

Invoices finalized from the CLI never get a target, so they are never uploaded.

How it meets the renderer: a delivery *target* is a ``kv`` row ``delivery:invoice:<id>`` (channel,
thread, state ``waiting`` → ``sending`` → ``sent``). It is written by whoever knows where the
invoice was asked for (the two surfaces above); the PDF is rendered independently after the
finalizing commit (``invoice.finalized`` → ``render_pdf`` job, :func:`wire`). Both sides then call
:func:`deliver_invoice` — the surface right after writing the target, the renderer on
``invoice.rendered`` — and whichever comes second uploads: the target row is claimed with a
locked read (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions are ``BEGIN
IMMEDIATE``), so each PDF is uploaded once even when the render runs in another process or on a
Procrastinate worker. A failed upload puts the target back to ``waiting`` (a later render or
call retries it); a claim older than :data:`SENDING_STALE` (its process died) is taken over.
Every upload is an audit record ``invoice.delivered``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.errors import BillingError
from billing.money import fmt
from bot.workflows import audit
from storage.db import Database
from storage.models import Advertiser, BillingRun, Invoice, Setting

log = logging.getLogger(__name__)

#: PDFs uploaded into a run's thread; the rest are named in one "… and N more" reply.
RUN_UPLOAD_CAP = 10
#: A claim (``sending``) older than this belongs to a process that died mid-upload.
SENDING_STALE = timedelta(minutes=10)
TARGET_PREFIX = "delivery:invoice:"
MORE_HINT = "`billbot invoices pdf NUMBER -o FILE`"

GetDb = Callable[[], Database]
GetKey = Callable[[], Ed25519PrivateKey | None]
GetClient = Callable[[], Any]


def target_key(invoice_id: int) -> str:
    return f"{TARGET_PREFIX}{int(invoice_id)}"


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """Where one invoice's PDF goes: ``origin`` is ``exception`` or ``run``."""

    channel: str
    thread_ts: str
    origin: str
    origin_id: int | None = None


def _new_target(t: Target) -> str:
    return json.dumps({"channel": t.channel, "thread_ts": t.thread_ts, "origin": t.origin,
                       "origin_id": t.origin_id, "state": "waiting"}, sort_keys=True)


def set_targets(s: Session, invoice_ids: Sequence[int], target: Target) -> list[int]:
    """Record ``target`` for each invoice that has none yet (bookkeeping, in the caller's
    transaction). Returns the invoice ids given a target now; an existing target is kept, so an
    invoice is never sent to two threads."""
    out = []
    for iid in invoice_ids:
        k = target_key(iid)
        if s.get(Setting, k) is None:
            s.add(Setting(key=k, value=_new_target(target)))
            out.append(int(iid))
    s.flush()
    return out


def target_of(db: Database, invoice_id: int) -> dict[str, Any] | None:
    """The delivery target row of an invoice as a dict (``state`` included), or None."""
    with db.read() as s:
        row = s.get(Setting, target_key(invoice_id))
        return None if row is None else dict(json.loads(row.value))


# --------------------------------------------------------------------------- one upload


@dataclass(frozen=True)
class _Claim:
    target: dict[str, Any]
    number: str
    title: str
    pdf_path: str
    pdf_sha256: str | None


def _claim(db: Database, invoice_id: int, now: datetime) -> _Claim | None:
    """Take the invoice's waiting target if its PDF is rendered (one transaction, row locked)."""
    k = target_key(invoice_id)
    with db.transaction() as s:
        row = s.execute(select(Setting).where(Setting.key == k).with_for_update()).scalar_one_or_none()
        if row is None:
            return None
        target = dict(json.loads(row.value))
        state = target.get("state")
        if state == "sent":
            return None
        if state == "sending":
            since = datetime.fromisoformat(str(target.get("since") or now.isoformat()))
            if now - since < SENDING_STALE:
                return None
            log.warning("delivery of invoice %s was claimed at %s and never finished; taking it over",
                        invoice_id, since)
        inv = s.get(Invoice, invoice_id)
        if inv is None or inv.pdf_state != "done" or not inv.pdf_path:
            return None  # not rendered yet: ``invoice.rendered`` calls again
        adv = s.get(Advertiser, inv.advertiser_id)
        name = adv.name if adv is not None else inv.advertiser_id
        title = f"{inv.number} · {name} · {fmt(inv.gross, inv.currency)} {inv.currency}"
        row.value = json.dumps({**target, "state": "sending", "since": now.isoformat()}, sort_keys=True)
        return _Claim(target, inv.number, title, inv.pdf_path, inv.pdf_sha256)


def _finish(db: Database, invoice_id: int, target: dict[str, Any], *, sent: dict[str, Any] | None,
            error: str | None, key: Ed25519PrivateKey | None, now: datetime) -> None:
    with db.transaction() as s:
        row = s.execute(select(Setting).where(Setting.key == target_key(invoice_id)).with_for_update()
                        ).scalar_one_or_none()
        if row is None:
            return
        if sent is None:
            row.value = json.dumps({**target, "state": "waiting", "error": (error or "")[:500]}, sort_keys=True)
            return
        row.value = json.dumps({**target, "state": "sent", "at": now.isoformat(), **sent}, sort_keys=True)
        audit.record(s, key=key, actor="system", action="invoice.delivered", subject_type="invoice",
                     subject_id=invoice_id, now=now,
                     payload={"channel": target["channel"], "thread_ts": target["thread_ts"],
                              "origin": target.get("origin"), "origin_id": target.get("origin_id"), **sent})


def _pdf_bytes(db: Database, invoice_id: int, c: _Claim, key: Ed25519PrivateKey | None) -> bytes:
    """The recorded PDF; rendered again (``ensure_invoice_pdf``) when the file is gone or changed."""
    from bot import context
    from bot.workflows.documents import ensure_invoice_pdf

    try:
        data = Path(c.pdf_path).read_bytes()
        if c.pdf_sha256 is None or hashlib.sha256(data).hexdigest() == c.pdf_sha256:
            return data
    except OSError:
        pass
    return ensure_invoice_pdf(db, invoice_id, renderer=context.pdf_renderer(), out_dir=context.documents_dir(),
                              key=key).read_bytes()


def deliver_invoice(db: Database, invoice_id: int, *, client: Any, key: Ed25519PrivateKey | None,
                    now: datetime | None = None) -> bool:
    """Upload the invoice's PDF into its target thread if it has a waiting target and a rendered
    PDF (``files_upload_v2``). Returns True if this call uploaded it. Safe to call any number of
    times from any process: the claim makes the upload happen once."""
    from slack_sdk.errors import SlackClientError

    now = now or datetime.now(UTC)
    if target_of(db, invoice_id) is None:  # the common case (CLI invoices, beyond the cap): no write
        return False
    c = _claim(db, invoice_id, now)
    if c is None:
        return False
    try:
        data = _pdf_bytes(db, invoice_id, c, key)
        resp = client.files_upload_v2(channel=c.target["channel"], thread_ts=c.target["thread_ts"], file=data,
                                      filename=f"{c.number}.pdf", title=c.title)
    except (SlackClientError, OSError, BillingError) as e:
        log.warning("uploading the PDF of %s to %s failed: %s", c.number, c.target["channel"], e)
        _finish(db, invoice_id, c.target, sent=None, error=f"{type(e).__name__}: {e}", key=key, now=now)
        return False
    files = resp.get("files") or [{}]
    sent = {"number": c.number, "file_id": files[0].get("id"), "filename": f"{c.number}.pdf",
            "pdf_sha256": hashlib.sha256(data).hexdigest()}
    _finish(db, invoice_id, c.target, sent=sent, error=None, key=key, now=now)
    return True


# --------------------------------------------------------------------------- the two origins


def deliver_to_exception_thread(client: Any, channel: str, thread_ts: str, invoice_ids: list[int]) -> None:
    """``notify_slack``'s invoice-delivery hook (Force on a below-threshold skip, after commit):
    name the invoices in the exception's thread, then upload their PDFs there (now if rendered,
    else when ``invoice.rendered`` arrives)."""
    db, key = _wiring.db(), _wiring.key()
    with db.read() as s:
        numbers = [n for n in s.execute(select(Invoice.number).where(Invoice.id.in_(invoice_ids))
                                        .order_by(Invoice.id)).scalars()]
    if numbers:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text="Invoice(s) created: " + ", ".join(numbers))
    with db.transaction() as s:
        set_targets(s, invoice_ids, Target(channel, thread_ts, "exception"))
    for iid in sorted(invoice_ids):
        deliver_invoice(db, iid, client=client, key=key)


@dataclass(frozen=True)
class RunDelivery:
    """What :func:`deliver_run` arranged: PDFs targeted at the thread, and the ones only named."""

    run_id: int
    targeted: list[int] = field(default_factory=list)
    uploaded_now: list[int] = field(default_factory=list)
    more: int = 0


def deliver_run(db: Database, client: Any, run_id: int, invoice_ids: Sequence[int], *, channel: str, ts: str,
                key: Ed25519PrivateKey | None, cap: int | None = None) -> RunDelivery | None:
    """A billing run started from Slack is done: remember its message (``BillingRun.channel`` /
    ``message_ts``), target the first ``cap`` of ``invoice_ids`` (the run's own invoices, in
    finalization order) at its thread, upload those already rendered, and name the rest in one
    reply. Returns None if the run does not exist."""
    cap = RUN_UPLOAD_CAP if cap is None else max(0, cap)
    ids = [int(i) for i in invoice_ids]
    first, rest = ids[:cap], ids[cap:]
    with db.transaction() as s:
        run = s.get(BillingRun, run_id)
        if run is None:
            return None
        if not run.message_ts:  # bookkeeping: where the run's message lives
            run.channel, run.message_ts = channel, ts
        targeted = set_targets(s, first, Target(channel, ts, "run", run_id))
    uploaded = [iid for iid in first if deliver_invoice(db, iid, client=client, key=key)]
    if rest:
        with db.read() as s:
            numbers = {int(i): str(n) for i, n in s.execute(
                select(Invoice.id, Invoice.number).where(Invoice.id.in_([rest[0], rest[-1]]))).all()}
        span = numbers.get(rest[0], "?") if len(rest) == 1 else f"{numbers.get(rest[0], '?')} … " \
            f"{numbers.get(rest[-1], '?')}"
        client.chat_postMessage(channel=channel, thread_ts=ts,
                                text=f"… and {len(rest)} more — {MORE_HINT} ({span})")
    return RunDelivery(run_id, targeted, uploaded, len(rest))


# --------------------------------------------------------------------------- wiring


@dataclass
class _Wiring:
    client: GetClient | None = None
    get_db: GetDb | None = None
    get_key: GetKey | None = None
    rendering: list[Callable[..., None]] = field(default_factory=list)  # our ``invoice.finalized`` subscribers

    def db(self) -> Database:
        if self.get_db is None:
            from bot.context import get_db

            return get_db()
        return self.get_db()

    def key(self) -> Ed25519PrivateKey | None:
        if self.get_key is None:
            from bot.context import get_key

            return get_key()
        return self.get_key()


_wiring = _Wiring()


def on_invoice_rendered(invoice_id: int, **_: Any) -> None:
    """``invoice.rendered`` subscriber: deliver the PDF if its invoice has a waiting target."""
    if _wiring.client is None:
        return
    db = _wiring.db()
    if target_of(db, invoice_id) is None:
        return
    deliver_invoice(db, invoice_id, client=_wiring.client(), key=_wiring.key())


def listen(client: GetClient, *, get_db: GetDb | None = None, get_key: GetKey | None = None,
           replace: bool = True) -> None:
    """Subscribe :func:`on_invoice_rendered` in this process. ``replace=False`` keeps a client
    already wired (a job process makes sure it listens without overriding the app's wiring)."""
    from bot.workflows.effects import subscribe

    if replace or _wiring.client is None:
        _wiring.client, _wiring.get_db, _wiring.get_key = client, get_db, get_key
    subscribe("invoice.rendered", on_invoice_rendered)


def wire(client: GetClient, *, get_db: GetDb, get_key: GetKey, submit: Callable[..., Any] | None) -> None:
    """What a process that serves Slack (``create_app``) or runs jobs (``billbot worker``) calls:
    render each invoice after its finalizing commit (``invoice.finalized`` → ``submit("render_pdf",
    invoice_id=…)``, the jobs facade; rendered here when ``submit`` is None), deliver rendered PDFs
    to their threads, and upload forced invoices into the exception's thread. Calling it again
    replaces the earlier wiring (no double rendering)."""
    from bot.workflows import effects
    from bot.workflows.documents import subscribe_rendering
    from bot.workflows.notify_slack import set_invoice_delivery

    _drop_rendering()
    before = list(effects._subscribers.get("invoice.finalized", ()))
    subscribe_rendering(get_db, get_key, submit=submit)
    _wiring.rendering = [f for f in effects._subscribers.get("invoice.finalized", ()) if f not in before]
    listen(client, get_db=get_db, get_key=get_key)
    set_invoice_delivery(deliver_to_exception_thread)


def _drop_rendering() -> None:
    from bot.workflows import effects

    subs = effects._subscribers.get("invoice.finalized")
    for fn in _wiring.rendering:
        if subs and fn in subs:
            subs.remove(fn)
    _wiring.rendering = []


def unwire() -> None:
    """Undo :func:`wire` / :func:`listen` (tests; a process that stops serving)."""
    from bot.workflows import effects
    from bot.workflows.notify_slack import set_invoice_delivery

    _drop_rendering()
    subs = effects._subscribers.get("invoice.rendered")
    if subs and on_invoice_rendered in subs:
        subs.remove(on_invoice_rendered)
    set_invoice_delivery(None)
    _wiring.client = _wiring.get_db = _wiring.get_key = None
