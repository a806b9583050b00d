"""The sandbox page in headless Chromium with canned Block Kit: rendering, confirm dialogs, modals, commands.
Screenshots go to test-artifacts/sandbox/page-*.png."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from bot.sandbox import SandboxServer, SandboxUser, start_sandbox
from bot.slack.client import make_client
from tests.sandbox.receiver import Receiver, Seen
from tests.sandbox.test_forward import REASON_MODAL

pytestmark = pytest.mark.browser

PEOPLE = [
    SandboxUser("U02APPROVER", "Arne Approver", None, ("approver",)),
    SandboxUser("U03FINANCE", "Fiona Finance", None, ("approver", "finance_manager")),
]
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

CANNED = [
    {"type": "header", "text": {"type": "plain_text", "text": ":warning: Variance: Autohaus Elbe KG", "emoji": True}},
    {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Display impressions* delivered 18,000 of 500,000 booked (<@U02APPROVER> please check)",
        },
        "fields": [
            {"type": "mrkdwn", "text": "*Period*\n2026-02"},
            {"type": "mrkdwn", "text": "*At stake*\n2,024.40 EUR"},
        ],
        "accessory": {
            "type": "button",
            "action_id": "details",
            "text": {"type": "plain_text", "text": "Details"},
            "value": "exc:7",
        },
    },
    {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "SLA due <!date^1767225600^{date_num} {time}|2026-01-01 00:00 UTC>"}],
    },
    {"type": "divider"},
    {
        "type": "image",
        "image_url": PIXEL,
        "alt_text": "delivery chart",
        "title": {"type": "plain_text", "text": "Delivery"},
    },
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "style": "primary",
                "value": "exc:7",
                "text": {"type": "plain_text", "text": "Approve"},
                "confirm": {
                    "title": {"type": "plain_text", "text": "Approve?"},
                    "text": {"type": "mrkdwn", "text": "Bill *2,024.40 EUR*."},
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Back"},
                },
            },
            {
                "type": "button",
                "action_id": "force",
                "style": "danger",
                "value": "exc:7",
                "text": {"type": "plain_text", "text": "Force"},
            },
        ],
    },
]


@pytest.fixture
def setup() -> Iterator[tuple[SandboxServer, Receiver]]:
    receiver = Receiver()
    sb = start_sandbox(users_provider=lambda: PEOPLE)
    sb.set_events_url(receiver.start())
    yield sb, receiver
    sb.stop()
    receiver.stop()


def test_page_renders_block_kit_and_round_trips_clicks_modals_and_commands(setup, page, shots) -> None:
    sb, receiver = setup
    client = make_client(sb.bot_token, sb.api_url)
    posted = client.chat_postMessage(channel="billing-exceptions", text="Variance: Autohaus Elbe KG", blocks=CANNED)
    client.chat_postMessage(channel=posted["channel"], thread_ts=posted["ts"], text="Opened by billbot ~late~ `INV-1`")
    client.chat_postEphemeral(channel=posted["channel"], user="U03FINANCE", text="Only Fiona sees this")
    client.views_publish(
        user_id="U03FINANCE",
        view={
            "type": "home",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Your queue"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "1 exception waits for you"}},
            ],
        },
    )

    def handler(seen: Seen):
        if (
            seen.form.get("payload")
            and seen.payload["type"] == "block_actions"
            and seen.payload["actions"][0]["action_id"] == "force"
        ):
            client.views_open(trigger_id=seen.payload["trigger_id"], view=REASON_MODAL)
        if seen.form.get("payload") and seen.payload["type"] == "view_submission":
            reason = seen.payload["view"]["state"]["values"]["reason"]["text"]["value"]
            if len(reason) < 5:
                return 200, {
                    "response_action": "errors",
                    "errors": {"reason": "Give a reason of at least 5 characters."},
                }
        if seen.form.get("command"):
            return 200, {"text": f"Started: {seen.form['text']}"}
        return 200, b""

    receiver.handler = handler
    page.goto(f"{sb.url}?user=U03FINANCE&channel=billing-exceptions")
    msgs = page.get_by_test_id("messages")
    expect(msgs.locator(".bk-header")).to_have_text("⚠️ Variance: Autohaus Elbe KG")
    expect(msgs.locator(".bk-field").first).to_contain_text("Period")
    expect(msgs.locator(".bk-section b").first).to_have_text("Display impressions")
    expect(msgs.locator(".mention").first).to_have_text("@Arne Approver")
    expect(msgs.locator("time.slack-date")).to_contain_text("2026-01-01")
    expect(msgs.locator(".bk-image img")).to_have_attribute("alt", "delivery chart")
    expect(msgs.locator(".bk-divider hr")).to_have_count(1)
    expect(msgs.get_by_test_id("ephemeral")).to_contain_text("Only Fiona sees this")
    expect(page.get_by_test_id("user-roles")).to_contain_text("finance_manager")
    page.screenshot(path=str(shots / "page-1-message.png"))

    # a confirm dialog first; "Back" sends nothing, "Approve" sends a signed block_actions
    page.get_by_test_id("button-approve").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text("Bill 2,024.40 EUR.")
    page.screenshot(path=str(shots / "page-2-confirm.png"))
    page.get_by_test_id("confirm-deny").click()
    assert receiver.seen == []
    page.get_by_test_id("button-approve").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("confirm-dialog")).to_have_count(0)
    page.wait_for_function("() => document.body.dataset.busy === '0'")
    assert receiver.seen[-1].payload["actions"][0]["action_id"] == "approve"

    # Force opens billbot's modal; billbot's validation error is shown, then the modal closes
    page.get_by_test_id("button-force").click()
    modal = page.get_by_test_id("modal")
    expect(modal).to_be_visible()
    expect(page.get_by_test_id("modal-title")).to_have_text("Force")
    page.get_by_test_id("input-text").fill("meh")
    page.get_by_test_id("select-pick").select_option("contract")
    page.get_by_test_id("modal-submit").click()
    expect(page.get_by_test_id("error-reason")).to_have_text("Give a reason of at least 5 characters.")
    page.screenshot(path=str(shots / "page-3-modal-error.png"))
    expect(page.get_by_test_id("input-text")).to_have_value("meh")
    page.get_by_test_id("input-text").fill("Client confirmed by mail")
    page.get_by_test_id("modal-submit").click()
    expect(modal).to_have_count(0)
    sub = receiver.seen[-1].payload
    assert sub["view"]["state"]["values"]["reason"]["text"]["value"] == "Client confirmed by mail"
    assert sub["view"]["state"]["values"]["kind"]["pick"]["selected_option"]["value"] == "contract"

    # billbot updates the message: the page follows without a reload
    client.chat_update(
        channel=posted["channel"],
        ts=posted["ts"],
        text="Forced by Fiona",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": ":white_check_mark: Forced by <@U03FINANCE>"}}],
    )
    expect(msgs.get_by_test_id("message").first).to_contain_text("✅ Forced by @Fiona Finance")
    expect(msgs.get_by_test_id("edited")).to_have_count(1)

    # threads
    msgs.get_by_test_id("thread-link").click()
    thread = page.get_by_test_id("thread")
    expect(thread).to_contain_text("Opened by billbot late INV-1")
    expect(thread.locator("s")).to_have_text("late")
    expect(thread.locator("code")).to_have_text("INV-1")

    # a slash command goes out signed; its immediate answer is shown only to the sender
    page.get_by_test_id("composer").fill("/billing run 2026-02")
    page.get_by_test_id("composer").press("Enter")
    expect(msgs.get_by_test_id("ephemeral").last).to_contain_text("Started: run 2026-02")
    assert receiver.seen[-1].form["user_id"] == "U03FINANCE"
    page.screenshot(path=str(shots / "page-4-after.png"))

    # the App Home, and another visitor who does not see Fiona's ephemerals
    page.get_by_test_id("app-billbot").click()
    expect(page.get_by_test_id("home")).to_contain_text("1 exception waits for you")
    assert any(b"app_home_opened" in s.body for s in receiver.seen)
    page.get_by_test_id("user-picker").select_option("U02APPROVER")
    expect(page.get_by_test_id("home")).to_contain_text("has not published a Home tab")
    page.get_by_test_id("channel-billing-exceptions").click()
    expect(msgs.get_by_test_id("message").first).to_contain_text("Forced by")
    expect(msgs.get_by_test_id("ephemeral")).to_have_count(0)
    page.screenshot(path=str(shots / "page-5-other-user.png"))


def test_mrkdwn_escapes_html_and_renders_links(setup, page) -> None:
    sb, _ = setup
    client = make_client(sb.bot_token, sb.api_url)
    client.chat_postMessage(
        channel="general",
        text="a &lt;script&gt;alert(1)&lt;/script&gt; <https://example.com/x?a=1&amp;b=2|the docs> *b*_i_ <!here>\n&gt; quoted",
    )
    page.goto(f"{sb.url}?user=U02APPROVER&channel=general")
    body = page.get_by_test_id("messages").locator(".msg-text")
    expect(body).to_contain_text("<script>alert(1)</script>")
    expect(body.locator("script")).to_have_count(0)
    expect(body.locator("a")).to_have_attribute("href", "https://example.com/x?a=1&b=2")
    expect(body.locator("blockquote")).to_have_text("quoted")
    expect(body.locator(".mention")).to_have_text("@here")


SHORTCODES = [
    {"type": "header", "text": {"type": "plain_text", "text": ":boom: Run failed", "emoji": True}},
    {"type": "section", "text": {"type": "mrkdwn", "text": ":raised_hand: Held for correction :ledger: :not_an_emoji:"}},
    {
        "type": "actions",
        "block_id": "choose",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "exc:7",
                "text": {"type": "plain_text", "text": ":white_check_mark: Approve", "emoji": True},
                "confirm": {
                    "title": {"type": "plain_text", "text": ":warning: Sure?"},
                    "text": {"type": "mrkdwn", "text": "Bill *2,024.40 EUR*."},
                    "confirm": {"type": "plain_text", "text": ":white_check_mark: Yes"},
                    "deny": {"type": "plain_text", "text": ":x: Back"},
                },
            },
            {
                "type": "static_select",
                "action_id": "pick",
                "placeholder": {"type": "plain_text", "text": ":mag: Pick"},
                "options": [{"text": {"type": "plain_text", "text": ":ledger: Book it"}, "value": "book"}],
            },
        ],
    },
]


def test_shortcodes_are_rendered_as_emoji_everywhere_and_clicks_carry_the_element_shown(setup, page, shots) -> None:
    sb, receiver = setup
    client = make_client(sb.bot_token, sb.api_url)
    client.chat_postMessage(channel="billing-exceptions", text=":tada: Run done", blocks=SHORTCODES)
    client.chat_postMessage(channel="billing-exceptions", text=":grey_question: No blocks, only text")
    page.goto(f"{sb.url}?user=U03FINANCE&channel=billing-exceptions")
    msgs = page.get_by_test_id("messages")
    expect(msgs).to_contain_text("💥 Run failed")
    expect(msgs).to_contain_text("✋ Held for correction 📒 :not_an_emoji:")  # unknown names stay as typed
    expect(msgs).to_contain_text("❔ No blocks, only text")
    expect(msgs.get_by_test_id("button-approve")).to_have_text("✅ Approve")
    assert "📒 Book it" in msgs.locator("select.bk-select").inner_text()
    page.screenshot(path=str(shots / "page-emoji.png"))

    msgs.get_by_test_id("button-approve").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("⚠️ Sure?")
    expect(page.get_by_test_id("confirm-deny")).to_have_text("❌ Back")
    expect(page.get_by_test_id("confirm-ok")).to_have_text("✅ Yes")
    with page.expect_response(lambda r: r.url.endswith("/sandbox/action")) as answered:
        page.get_by_test_id("confirm-ok").click()
    assert answered.value.json()["ok"] is True
    sent = answered.value.request.post_data_json
    # the element as the page showed it goes along, so a click on an outdated rendering still reaches the app
    assert sent["action_id"] == "approve" and sent["element"]["value"] == "exc:7"
    assert any(s.payload["actions"][0]["action_id"] == "approve" for s in receiver.seen if s.form.get("payload"))
