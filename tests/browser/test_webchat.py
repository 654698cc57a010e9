"""The guest web chat in headless Chromium, from the guest's side: write, get the assistant's
streamed answer, reload and find the history, receive an agent's reply live; and the widget a
hotel's website embeds."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Browser, Page, expect

from hotelchat.emulators.openai_api import OpenAIEmulator
from tests.browser.pages import XSS, hotel_website, log_in, screenshot
from tests.conftest import Tenant, create_agent, run_jobs
from tests.live import Live


async def test_a_guest_chats_with_the_assistant_and_comes_back(
    page: Page, live: Live, tenant: Tenant, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next("Yes! Parking is EUR 18 per day in our underground garage.")
    await page.goto(f"{live.url}/chat/{tenant.slug}")
    await expect(page.locator("#chat-status")).to_have_text("online")
    await page.fill("#chat-body", "Is there parking?")
    await page.press("#chat-body", "Enter")
    await expect(page.locator("#chat-messages .bubble.guest")).to_have_text("Is there parking?")
    await run_jobs(live.settings)
    answer = page.locator("#chat-messages .bubble.ai")
    await expect(answer).to_have_text("Yes! Parking is EUR 18 per day in our underground garage.")
    await expect(page.locator("#chat-streaming")).to_be_hidden()
    await screenshot(page, "webchat")
    # A returning guest (same browser) sees their history.
    await page.reload()
    await expect(page.locator("#chat-messages .bubble")).to_have_count(2)
    await expect(page.locator("#chat-messages .bubble.guest")).to_have_text("Is there parking?")


async def test_an_agents_reply_reaches_the_guest_live(
    browser: Browser, page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await page.goto(f"{live.url}/chat/{tenant.slug}")
    await expect(page.locator("#chat-status")).to_have_text("online")
    await page.fill("#chat-body", XSS)
    await page.press("#chat-body", "Enter")
    await expect(page.locator("#chat-messages .bubble.guest")).to_have_text(XSS)
    assert await page.locator("#chat-messages img").count() == 0

    await create_agent(admin, "ana@a.test", [tenant.slug])
    agent_context = await browser.new_context()
    agent = await agent_context.new_page()
    try:
        await log_in(agent, live, "ana@a.test")
        row = agent.locator(".conversation-row").first
        await expect(row.locator(".channel")).to_have_text("Web")
        await row.click()
        await agent.click('button[data-action="takeover"]')
        await agent.fill("#body", "Hello from the front desk!")
        await agent.click("#send")
        await expect(agent.locator("#messages .bubble.agent")).to_contain_text(
            "Hello from the front desk!"
        )
        await run_jobs(live.settings)
        await expect(page.locator("#chat-messages .bubble.agent")).to_have_text(
            "Hello from the front desk!"
        )
        await expect(agent.locator("#messages .bubble.agent .tick")).to_have_text("✓✓")
    finally:
        await agent_context.close()
    assert await page.evaluate("window.__pwned") is None


async def test_the_widget_embeds_the_chat_in_a_hotel_website(
    page: Page, live: Live, tenant: Tenant
) -> None:
    with hotel_website(live, tenant.slug) as website:
        await page.goto(website + "/")
        await page.click("text=Chat with us")
        frame = page.frame_locator("iframe[title='Chat with the hotel']")
        await expect(frame.locator("#chat-status")).to_have_text("online")
        await frame.locator("#chat-body").fill("Hello from your website")
        await frame.locator("#chat-body").press("Enter")
        await expect(frame.locator(".bubble.guest")).to_have_text("Hello from your website")
