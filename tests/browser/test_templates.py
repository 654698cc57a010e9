"""The template picker in headless Chromium: outside WhatsApp's 24-hour window the dashboard
offers the hotel's approved templates in the guest's language, with variable inputs, a live
preview and the server's checks made in the browser first; the template is sent with its
variables through the worker and Twilio (the emulator)."""

from __future__ import annotations

from datetime import time

import asyncpg
from playwright.async_api import Page, expect

from hotelchat.domain.templates import Journey
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.services import templates
from tests.browser.pages import XSS, log_in, screenshot
from tests.conftest import Tenant, create_agent, run_jobs
from tests.e2e.processes import wait_until
from tests.helpers import receive
from tests.live import Live


async def test_outside_the_window_an_agent_sends_a_template_with_its_variables(
    page: Page,
    live: Live,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    twilio_emulator.add_content(
        tenant.account_sid,
        friendly_name="room_ready",
        language="en",
        body="Hello {{1}}, room {{2}} is ready.",
        variables={"1": "Ana", "2": "101"},
    )
    es = twilio_emulator.add_content(
        tenant.account_sid,
        friendly_name="room_ready",
        language="es",
        body="Hola {{1}}, la habitación {{2}} está lista.",
        variables={"1": "Ana", "2": "101"},
    )
    await templates.sync_hotel(live.container.deps, tenant.hotel_id)
    message_id = await receive(live.container, tenant, "¿Hay parking?")
    await admin.execute("UPDATE messages SET reply_state = 'skipped' WHERE id = $1", message_id)
    await admin.execute("UPDATE conversations SET last_inbound_at = now() - interval '30 hours'")
    await admin.execute("UPDATE guests SET language = 'es'")
    assert live.container.deps.templates is not None
    await live.container.deps.templates.add_journey(
        tenant.hotel_id,
        Journey(0, "pre-arrival", "room_ready", "check_in", -1, time(10), time(22), time(8)),
    )
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana", role="manager")
    await log_in(page, live, "ana@a.test")
    await expect(page.locator("#journeys")).to_have_text(
        "pre-arrival: room_ready, 1 d before check-in at 10:00, quiet 22:00-08:00"
    )
    await page.locator(".conversation-row").first.click()

    picker = page.locator("#template-picker")
    await expect(picker).to_be_visible()
    await expect(page.locator("#window")).to_contain_text("window closed")
    await expect(page.locator("#template-select")).to_have_value(es)  # the guest's language
    await expect(page.locator("#template-preview")).to_have_text(
        "Hola {{1}}, la habitación {{2}} está lista."
    )

    # Checked in the browser: nothing is sent while a variable is missing or malformed.
    await page.click("#template-send")
    await expect(page.locator("#template-problems")).to_contain_text("{{1}} is missing")
    await page.fill('#template-variables input[data-name="1"]', "Lucía      López")
    await page.fill('#template-variables input[data-name="2"]', "204")
    await page.click("#template-send")
    await expect(page.locator("#template-problems")).to_contain_text("more than four spaces")
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0

    # Hostile text is previewed as text.
    await page.fill('#template-variables input[data-name="1"]', XSS)
    await expect(page.locator("#template-preview")).to_contain_text("<img src=x")
    await page.fill('#template-variables input[data-name="1"]', "Lucía")
    await expect(page.locator("#template-preview")).to_have_text(
        "Hola Lucía, la habitación 204 está lista."
    )
    await expect(page.locator("#template-problems")).to_be_hidden()
    await screenshot(page, "template-picker")
    await page.click("#template-send")
    bubble = page.locator("#messages .bubble.agent").last
    await expect(bubble).to_contain_text("Hola Lucía, la habitación 204 está lista.")
    await expect(page.locator("#state")).to_have_text("With an agent")

    await run_jobs(live.settings)
    await wait_until(lambda: len(twilio_emulator.sent()) == 1, 15, "the template at Twilio")
    (sent,) = twilio_emulator.sent()
    assert sent.content_sid == es and sent.body == "Hola Lucía, la habitación 204 está lista."
    await expect(bubble.locator(".tick")).to_have_text("✓")
    assert await page.evaluate("window.__pwned") is None
