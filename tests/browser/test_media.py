"""Media in headless Chromium: a guest's WhatsApp photo is downloaded by the worker and shown
inline to the agent; an agent attaches a file that the Twilio emulator fetches, as Twilio does,
through its short-lived signed link."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Browser, FilePayload, Page, expect

from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.browser.pages import log_in, screenshot
from tests.conftest import Tenant, create_agent, run_jobs
from tests.e2e.processes import wait_until
from tests.helpers import media_webhook, post_params, tiny_png
from tests.live import Live

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def test_a_guest_photo_is_shown_inline_and_an_agents_attachment_reaches_twilio(
    page: Page,
    live: Live,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await log_in(page, live, "ana@a.test")

    photo = tiny_png(24, 16)
    params = media_webhook(tenant, twilio_emulator, [("image/png", photo)], body="The shower")
    await post_params(live.url, tenant, params)
    row = page.locator(".conversation-row").first
    await expect(row).to_contain_text("The shower")
    await row.click()
    bubble = page.locator("#messages .bubble.guest").first
    await expect(bubble.locator(".media-pending")).to_have_text("photo: downloading…")

    # The worker downloads it from Twilio (with the hotel's credentials) into storage; the
    # timeline updates live and the photo is shown inline, decoded by the browser.
    await run_jobs(live.settings)
    image = bubble.locator("img.media-photo")
    await expect(image).to_be_visible()
    width = await image.evaluate("(img) => img.complete && img.naturalWidth")
    assert width == 24
    assert (await image.get_attribute("src") or "").startswith("/api/media/")
    media_sid = params["MediaUrl0"].rsplit("/", 1)[1]
    assert twilio_emulator.media(media_sid).deleted
    await screenshot(page, "media-photo")

    # The agent attaches a PDF and sends it: the emulator fetches it from the signed link.
    menu: FilePayload = {"name": "menu.pdf", "mimeType": "application/pdf", "buffer": PDF}
    await page.set_input_files("#attach", files=[menu])
    await page.fill("#body", "Here is our menu.")
    await page.click("#send")
    sent_bubble = page.locator("#messages .bubble.agent").last
    await expect(sent_bubble.locator(".media-file")).to_have_text("document: menu.pdf")
    await run_jobs(live.settings)
    await wait_until(
        lambda: any(m.media for m in twilio_emulator.sent()), 15, "the attachment at Twilio"
    )
    sent = next(m for m in twilio_emulator.sent() if m.media)
    assert sent.body == "Here is our menu."
    [fetched] = sent.media
    assert fetched.url.startswith(live.url + "/media/")
    assert (fetched.status, fetched.content_type, fetched.data) == (200, "application/pdf", PDF)
    assert sent.status != "failed"


async def test_a_web_chat_guest_sends_a_photo_that_the_agent_sees_inline(
    browser: Browser, page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await page.goto(f"{live.url}/chat/{tenant.slug}")
    await expect(page.locator("#chat-status")).to_have_text("online")
    shot: FilePayload = {"name": "bill.png", "mimeType": "image/png", "buffer": tiny_png(10, 30)}
    await page.set_input_files("#chat-photo", files=[shot])
    await page.press("#chat-body", "Enter")
    mine = page.locator("#chat-messages .bubble.guest img.media-photo")
    await expect(mine).to_be_visible()
    await page.wait_for_function(
        "() => { const i = document.querySelector('#chat-messages img.media-photo');"
        " return i && i.complete && i.naturalWidth === 10; }"
    )
    # A file that is not a photo is refused on the guest's side with WhatsApp's reason.
    text: FilePayload = {"name": "a.pdf", "mimeType": "application/pdf", "buffer": PDF}
    await page.set_input_files("#chat-photo", files=[text])
    await page.press("#chat-body", "Enter")
    await expect(page.locator("#chat-error")).to_have_text("only photos can be attached here")

    await create_agent(admin, "ana@a.test", [tenant.slug])
    agent_context = await browser.new_context()
    agent = await agent_context.new_page()
    try:
        await log_in(agent, live, "ana@a.test")
        await agent.locator(".conversation-row").first.click()
        image = agent.locator("#messages .bubble.guest img.media-photo")
        await expect(image).to_be_visible()
        await agent.wait_for_function(
            "() => { const i = document.querySelector('#messages img.media-photo');"
            " return i && i.complete && i.naturalHeight === 30; }"
        )
    finally:
        await agent_context.close()
