"""The dashboard in headless Chromium for WhatsApp as hotels use it: a guest's STOP shows as an
"Opted out" badge in the conversation header (and START removes it), and a reply sent in parts
shows as one reply with a delivery tick per part."""

from __future__ import annotations

import aiohttp
import asyncpg
from playwright.async_api import Page, expect

from hotelchat.adapters.twilio import sign
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.browser.pages import log_in, screenshot
from tests.conftest import Tenant, create_agent, run_jobs
from tests.helpers import STATUS_PATH, post_webhook
from tests.live import TIMEOUT, Live

LONG = "\n\n".join(
    f"Option {n}: " + "Our concierge can book a table in the old town for you tonight. " * 18
    for n in range(1, 4)
).strip()


async def part_callback(
    live: Live, tenant: Tenant, message_id: int, part: int, sid: str, status: str
) -> None:
    params = {
        "AccountSid": tenant.account_sid, "From": f"whatsapp:{tenant.phone_number}",
        "To": "whatsapp:+15551234567", "MessageSid": sid, "MessageStatus": status,
    }  # fmt: skip
    url = f"{live.url}{STATUS_PATH}?message_id={message_id}&part={part}"
    headers = {"X-Twilio-Signature": sign(tenant.auth_token, url, params)}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(url, data=params, headers=headers) as response,
    ):
        assert response.status == 204


async def test_an_agent_sees_the_opt_out_badge_and_the_ticks_of_each_part(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await log_in(page, live, "ana@a.test")
    await post_webhook(live.url, tenant, "Hello!")
    await run_jobs(live.settings)
    await page.locator(".conversation-row").first.click()
    badge = page.locator("#opted-out")
    await expect(badge).to_be_hidden()

    # STOP: the badge appears live, with the confirmation in the timeline.
    await post_webhook(live.url, tenant, "STOP")
    await run_jobs(live.settings)
    await expect(badge).to_be_visible()
    await expect(badge).to_have_text("Opted out")
    await expect(page.locator("#messages .bubble.system").last).to_contain_text(
        "no longer receive messages"
    )
    await screenshot(page, "dashboard-opted-out")

    # A question is still answered; the long answer goes out in three parts.
    openai_emulator.answer_next(LONG)
    await post_webhook(live.url, tenant, "What can we do tonight?")
    await run_jobs(live.settings)
    reply = page.locator("#messages .bubble.ai").last
    await expect(reply.locator(".text")).to_contain_text("Option 3:")
    ticks = reply.locator(".parts .part-tick")
    await expect(ticks).to_have_text(["1/3 ✓", "2/3 ✓", "3/3 ✓"])
    sent = [m for m in twilio_emulator.sent() if m.body.startswith("Option")]
    assert [m.body.split(":")[0] for m in sent] == ["Option 1", "Option 2", "Option 3"]
    message_id = int(await reply.get_attribute("data-id") or 0)
    await part_callback(live, tenant, message_id, 1, sent[1].sid, "delivered")
    await expect(ticks).to_have_text(["1/3 ✓", "2/3 ✓✓", "3/3 ✓"])
    await expect(reply.locator(".meta .tick")).to_have_text("✓")  # the least advanced part
    for part in (0, 2):
        await part_callback(live, tenant, message_id, part, sent[part].sid, "read")
    await expect(ticks).to_have_text(["1/3 ✓✓ read", "2/3 ✓✓", "3/3 ✓✓ read"])
    await expect(reply.locator(".meta .tick")).to_have_text("✓✓")
    await screenshot(page, "dashboard-parts")

    # START: the badge goes away.
    await post_webhook(live.url, tenant, "START")
    await run_jobs(live.settings)
    await expect(badge).to_be_hidden()
