"""The agent dashboard in headless Chromium: log in, watch a guest's WhatsApp message arrive live,
take over, reply, see the delivery tick advance, and see an XSS payload shown as text."""

from __future__ import annotations

import aiohttp
import asyncpg
from playwright.async_api import Page, expect

from hotelchat.adapters.twilio import sign
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.browser.pages import XSS, log_in, screenshot
from tests.conftest import Tenant, create_agent, run_jobs
from tests.e2e.processes import wait_until
from tests.helpers import STATUS_PATH, post_webhook
from tests.live import TIMEOUT, Live, login_cookie, socket


async def status_callback(
    live: Live, tenant: Tenant, message_id: int, sid: str, status: str, part: int | None = None
) -> None:
    """POST Twilio's signed status callback for message `message_id` (its `part`, if given)."""
    params = {
        "AccountSid": tenant.account_sid, "From": f"whatsapp:{tenant.phone_number}",
        "To": "whatsapp:+15551234567", "MessageSid": sid, "MessageStatus": status,
    }  # fmt: skip
    url = f"{live.url}{STATUS_PATH}?message_id={message_id}"
    if part is not None:
        url += f"&part={part}"
    headers = {"X-Twilio-Signature": sign(tenant.auth_token, url, params)}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(url, data=params, headers=headers) as response,
    ):
        assert response.status == 204


async def test_an_agent_watches_takes_over_replies_and_sees_the_ticks(
    page: Page,
    live: Live,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await log_in(page, live, "ana@a.test")

    # A guest writes on WhatsApp: the conversation appears live, without a reload.
    await post_webhook(live.url, tenant, "Hi! Is there parking at the hotel?")
    row = page.locator(".conversation-row").first
    await expect(row).to_contain_text("Hi! Is there parking at the hotel?")
    await expect(row.locator(".unread")).to_have_text("1")
    await row.click()
    await expect(page.locator("#messages .bubble.guest .text")).to_have_text(
        "Hi! Is there parking at the hotel?"
    )
    await expect(page.locator("#state")).to_have_text("AI answering")

    # The assistant answers (the worker runs); the answer shows up live.
    await run_jobs(live.settings)
    await expect(page.locator("#messages .bubble.ai")).to_contain_text("Parking costs EUR 18")
    await expect(page.locator("#messages .bubble.ai .tick")).to_have_text("✓")
    await expect(page.locator("#placeholder")).to_be_hidden()

    # Take over, reply.
    await page.click('button[data-action="takeover"]')
    await expect(page.locator("#state")).to_have_text("With an agent")
    await expect(page.locator("#owner")).to_have_text("· Ana")
    await page.fill("#body", "Hi, this is Ana: I have reserved a space for you.")
    await page.click("#send")
    sent_bubble = page.locator("#messages .bubble.agent").last
    await expect(sent_bubble).to_contain_text("I have reserved a space for you.")
    await expect(sent_bubble.locator(".tick")).to_have_text("sending…")

    # The worker sends it through Twilio; the ticks follow Twilio's status callbacks.
    await run_jobs(live.settings)
    await wait_until(lambda: len(twilio_emulator.sent()) == 2, 15, "the agent's reply at Twilio")
    sent = twilio_emulator.sent()[-1]
    assert sent.body == "Hi, this is Ana: I have reserved a space for you."
    message_id = int(await sent_bubble.get_attribute("data-id") or 0)
    await expect(sent_bubble.locator(".tick")).to_have_text("✓")
    await status_callback(live, tenant, message_id, sent.sid, "delivered")
    await expect(sent_bubble.locator(".tick")).to_have_text("✓✓")
    await status_callback(live, tenant, message_id, sent.sid, "read")
    await expect(sent_bubble.locator(".tick")).to_have_text("✓✓ read")
    await status_callback(live, tenant, message_id, sent.sid, "sent")  # late: changes nothing
    await expect(sent_bubble.locator(".tick")).to_have_text("✓✓ read")

    # An internal note is shown to agents, marked as such, and never sent.
    await page.fill("#body", "Guest prefers a space near the lift.")
    await page.click("#note")
    await expect(page.locator("#messages .bubble.note")).to_contain_text("Internal note")
    await screenshot(page, "dashboard")
    assert len(twilio_emulator.sent()) == 2


async def test_guest_text_is_shown_as_text_never_as_html(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    await log_in(page, live, "ana@a.test")
    await post_webhook(live.url, tenant, XSS)
    row = page.locator(".conversation-row").first
    await expect(row.locator(".preview")).to_have_text(XSS)
    await row.click()
    bubble = page.locator("#messages .bubble.guest .text")
    await expect(bubble).to_have_text(XSS)
    assert await page.locator("#messages img").count() == 0
    assert await page.locator("#messages a").count() == 0
    assert await page.evaluate("window.__pwned") is None
    # The policy would stop an inline handler even if text ever became HTML.
    policy = await page.evaluate(
        "fetch('/dashboard').then(r => r.headers.get('content-security-policy'))"
    )
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


async def test_another_hotels_conversation_cannot_be_opened(
    page: Page, live: Live, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    await post_webhook(live.url, other_tenant, "hotel B's secret")
    await log_in(page, live, "ana@a.test")
    (theirs,) = await live.container.deps.inbox.conversations(
        other_tenant.hotel_id, states=None, limit=1
    )
    await page.goto(f"{live.url}/dashboard?c={theirs.id}")
    await expect(page.locator("#error")).to_have_text("no such conversation")
    assert "secret" not in await page.content()


async def test_the_dashboard_shows_who_is_online_from_batched_presence_events(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    """Presence arrives batched (`{agents: [...]}`): another agent connecting and leaving shows
    and then disappears on Ana's page."""
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await create_agent(admin, "bo@a.test", [tenant.slug], name="Bo")
    await log_in(page, live, "ana@a.test")
    presence = page.locator("#presence")
    await expect(presence).to_contain_text("Ana (online)")
    bo_cookie = await login_cookie(live.url, "bo@a.test")
    async with socket(live.url, "/agent", cookie=bo_cookie):
        await expect(presence).to_contain_text("Bo (online)")
    await expect(presence).not_to_contain_text("Bo")
    await expect(presence).to_contain_text("Ana (online)")
