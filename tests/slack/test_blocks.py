"""Block Kit builders stay within Slack's limits whatever the data (slack_sdk's models validate)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.blocks.common import MAX_BLOCKS, money_text, slack_date
from bot.blocks.exceptions import exception_message, parse_button_value
from bot.blocks.help import help_blocks
from bot.blocks.home import QueueItem, SourceLine, home_view
from bot.blocks.modals import details_modal, reason_modal
from bot.blocks.progress import run_progress
from storage.models import BillingException

text = st.text(min_size=0, max_size=5000)


def _exc(i: int = 1, **kw) -> BillingException:
    base = dict(id=i, key=f"k{i}", kind="variance", state="pending", legal_entity_id="le", advertiser_id="adv",
                preinvoice_id=3, amount=Decimal("1234.5"), currency="EUR", cause="under_delivery", summary="",
                evidence={}, subject_hash="", approvals_needed=1, approvals=[], started_by="U1",
                period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
                due_at=datetime(2026, 3, 3, 9, tzinfo=UTC), created_at=datetime(2026, 3, 2, tzinfo=UTC))
    base.update(kw)
    return BillingException(**base)


def _dicts(blocks):
    return [b.to_dict() for b in blocks]  # to_dict() validates every length limit


@settings(max_examples=60, deadline=None)
@given(summary=text, cause=text, rule=text, reason=text, name=text,
       kind=st.sampled_from(["variance", "below_threshold"]),
       state=st.sampled_from(["pending", "escalated", "approved", "rejected", "forced", "closed"]),
       days=st.lists(st.dates(), max_size=400))
def test_exception_message_is_valid_for_any_content(summary, cause, rule, reason, name, kind, state, days):
    exc = _exc(kind=kind, state=state, summary=summary, cause=cause, reason=reason, decided_by="U2",
               decided_at=datetime(2026, 3, 2, 10, tzinfo=UTC),
               evidence={"rule": rule, "booked_amount": "10", "computed_amount": "x", "days": [str(d) for d in days],
                         "figures": {rule[:50]: reason[:100]}})
    blocks = _dicts(exception_message(exc, subject_hash="a" * 64, advertiser_name=name or "adv"))
    assert 1 <= len(blocks) <= MAX_BLOCKS
    details_modal(exc, name).to_dict()
    if state in ("pending", "escalated"):
        reason_modal(exc, "reject", {"e": 1}).to_dict()


def test_home_view_stays_under_fifty_blocks_with_a_long_queue():
    queue = [QueueItem(_exc(i), "b" * 64, f"Advertiser {i}") for i in range(1, 200)]
    sources = [SourceLine(f"source-{i}", None, None, "done") for i in range(80)]
    view = home_view(queue=queue, decisions=[], sources=sources, last_run=None).to_dict()
    assert len(view["blocks"]) <= MAX_BLOCKS
    assert view["blocks"][0]["text"]["text"] == "Waiting for you (199)"


def test_progress_and_help_stay_valid_with_long_logs():
    lines = [f"Document INV-2026-{i:06d} created for Autohaus {i}" for i in range(5000)]
    blocks = _dicts(run_progress("Billing run 2026-02", state="done", started_by="U1", lines=lines, progress="1/2"))
    assert len(blocks) <= 3 and "INV-2026-004999" in blocks[1]["text"]["text"]
    assert len(_dicts(help_blocks("x" * 4000))) == 3


def test_formats():
    assert money_text(Decimal("7000"), "EUR") == "7,000.00 EUR"
    assert money_text(Decimal("1234.5"), "JPY") == "1,235 JPY"
    assert slack_date(datetime(2026, 3, 2, 9, tzinfo=UTC)) == (
        "<!date^1772442000^{date_short_pretty} {time}|2026-03-02 10:00 CET>")  # fallback in BILLBOT_TIMEZONE
    assert parse_button_value("12:" + "c" * 64) == (12, "c" * 64)
