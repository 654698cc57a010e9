"""The dashboard in headless Chromium for WhatsApp as hotels use it: a guest's STOP shows as an
"Opted out" badge in the conversation header (and START removes it), and a reply sent in parts
shows as one reply with a delivery tick per part."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Page, expect

from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.browser.pages import log_in, screenshot
from tests.browser.test_dashboard import status_callback
from tests.conftest import Tenant, create_agent, run_jobs
from tests.helpers import post_webhook
from tests.live import Live

LONG = "\n\n".join(
    f"Option {n}: " + "Our concierge can book a table in the old town for you tonight. " * 18
    for n in range(1, 4)
).strip()


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
    await status_callback(live, tenant, message_id, sent[1].sid, "delivered", part=1)
    await expect(ticks).to_have_text(["1/3 ✓", "2/3 ✓✓", "3/3 ✓"])
    await expect(reply.locator(".meta .tick")).to_have_text("✓")  # the least advanced part
    for part in (0, 2):
        await status_callback(live, tenant, message_id, sent[part].sid, "read", part=part)
    await expect(ticks).to_have_text(["1/3 ✓✓ read", "2/3 ✓✓", "3/3 ✓✓ read"])
    await expect(reply.locator(".meta .tick")).to_have_text("✓✓")
    await screenshot(page, "dashboard-parts")

    # START: the badge goes away.
    await post_webhook(live.url, tenant, "START")
    await run_jobs(live.settings)
    await expect(badge).to_be_hidden()
