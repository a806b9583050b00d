"""The managers' daily digest in Slack: one message to the managers channel with its chart inline
(:mod:`bot.workflows.digest` collects the figures and records the sending)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.blocks.digest import digest_blocks, digest_text
from bot.workflows.audit import publish_anchor
from bot.workflows.digest import DigestData, collect, record_sent, render_chart
from storage.db import Database
from storage.settings import get_settings


@dataclass(frozen=True)
class DigestResult:
    data: DigestData
    blocks: list[dict[str, Any]]
    text: str
    chart_png: bytes
    sent: bool
    channel: str | None = None
    ts: str | None = None
    file_id: str | None = None
    problems: list[str] = field(default_factory=list)


def send_digest(
    db: Database,
    *,
    now: datetime | None = None,
    client: WebClient | None = None,
    key: Ed25519PrivateKey | None = None,
    channel: str | None = None,
    dry_run: bool = False,
    actor: str = "scheduler",
) -> DigestResult:
    """Build the digest; unless ``dry_run``, upload the chart (``files_upload_v2``, not shared), post
    the digest to the managers channel with the chart inline (an image block naming the file), then
    record ``digest.last_sent_at`` (audited). When the chart cannot be shown inline the digest goes
    out without it and the chart is shared in its thread."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with db.read() as s:
        data = collect(s, now=now)
    blocks = [b.to_dict() for b in digest_blocks(data)]
    text = digest_text(data)
    png = render_chart(data)
    if dry_run or client is None:
        return DigestResult(data, blocks, text, png, sent=False)
    channel = channel or get_settings().managers_channel
    extra: list[dict[str, Any]] = []
    if key is not None:  # the signed chain head, published outside the database: the anchor file and here
        with db.read() as s:
            anchor = publish_anchor(s, key=key, path=get_settings().anchor_path, now=now)
        extra.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"Audit anchor: record {anchor['seq']}, sha256 `{anchor['hash']}`, key `{anchor['key_id']}`, "
            f"signature `{anchor['signature']}`")}]})
    problems: list[str] = []
    filename = f"digest-{now.date().isoformat()}.png"
    file_id = None
    try:
        up = client.files_upload_v2(content=png, filename=filename, title="Open exceptions by age and trend")
        file_id = (up.get("file") or {}).get("id")
    except SlackClientError as err:  # the digest goes out without its picture; said, not retried
        problems.append(f"chart upload failed: {err}")
    resp = None
    if file_id:
        inline = [b.to_dict() for b in digest_blocks(data, chart_file_id=file_id)] + extra
        try:
            resp = client.chat_postMessage(channel=channel, text=text, blocks=inline)
            blocks = inline
        except SlackApiError as err:  # e.g. the file is not processed yet: without it, chart in the thread
            problems.append(f"chart not shown inline: {err.response.get('error')}")
    shown_inline = resp is not None
    if resp is None:
        blocks = blocks + extra
        resp = client.chat_postMessage(channel=channel, text=text, blocks=blocks)
    channel_id, ts = str(resp["channel"]), str(resp["ts"])
    if not shown_inline:
        try:
            up = client.files_upload_v2(channel=channel_id, thread_ts=ts, content=png, filename=filename,
                                        title="Open exceptions by age and trend")
            file_id = (up.get("file") or {}).get("id")
        except SlackClientError as err:  # the message is out; a missing chart is reported, not retried
            problems.append(f"chart upload failed: {err}")
    record_sent(db, data, now=now, key=key, actor=actor, channel=channel_id, ts=ts, file_id=file_id)
    return DigestResult(data, blocks, text, png, sent=True, channel=channel_id, ts=ts, file_id=file_id,
                        problems=problems)
