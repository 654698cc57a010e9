"""A reservation link in headless Chromium: the guest opens the chat page from the link the
hotel sent (`#r=…`, or `?r=…`), their chat is tied to the reservation, and the link leaves the
address bar; a forged link leaves the guest chatting, unlinked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from playwright.async_api import Page, expect

from hotelchat.services import reservations
from hotelchat.services.ports import Reservation
from tests.browser.pages import hotel_website
from tests.conftest import Tenant
from tests.live import Live


async def add_stay(live: Live, tenant: Tenant, code: str) -> None:
    today = datetime.now(UTC).date()
    stay = Reservation(code, "Ana García", today, today + timedelta(days=3))
    await live.container.deps.reservations.upsert_many(tenant.hotel_id, [stay], source="pms")


async def linked_conversations(admin: asyncpg.Connection, code: str) -> list[int]:
    """The web conversations whose guest reservation `code` is tied to."""
    rows = await admin.fetch(
        """SELECT c.id FROM reservations r
           JOIN guests g ON g.hotel_id = r.hotel_id AND g.web_id = r.web_id
           JOIN conversations c ON c.hotel_id = g.hotel_id AND c.guest_id = g.id
           WHERE r.code = $1""",
        code,
    )
    return [row["id"] for row in rows]


@pytest.mark.parametrize("form", ["fragment", "query"])
async def test_a_guest_opening_their_link_is_tied_to_their_reservation(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection, form: str
) -> None:
    await add_stay(live, tenant, "LINK-77")
    url = await reservations.link_url(
        live.container.deps, tenant.hotel_id, tenant.slug, "LINK-77", base_url=live.url
    )
    if form == "query":
        url = url.replace("#r=", "?embed=1&r=")
    await page.goto(url)
    await expect(page.locator("#chat-status")).to_have_text("online")
    assert page.url == f"{live.url}/chat/{tenant.slug}" + ("?embed=1" if form == "query" else "")
    (conversation,) = await linked_conversations(admin, "LINK-77")
    await page.fill("#chat-body", "What's my booking?")
    await page.press("#chat-body", "Enter")
    await expect(page.locator("#chat-messages .bubble.guest")).to_have_text("What's my booking?")
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM messages WHERE conversation_id = $1", conversation
        )
        == 1
    )


async def test_a_forged_link_leaves_the_guest_chatting_unlinked(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await add_stay(live, tenant, "LINK-78")
    await page.goto(f"{live.url}/chat/{tenant.slug}#r=forged.link.token")
    await expect(page.locator("#chat-status")).to_have_text("online")
    await expect(page.locator("#chat-error")).to_be_hidden()
    assert page.url == f"{live.url}/chat/{tenant.slug}"
    await page.fill("#chat-body", "Hello")
    await page.press("#chat-body", "Enter")
    await expect(page.locator("#chat-messages .bubble.guest")).to_have_text("Hello")
    assert await linked_conversations(admin, "LINK-78") == []


async def test_a_link_to_the_hotels_website_opens_the_widget_tied_to_the_reservation(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    """`reservations link --site`: the hotel's own page (another origin) with embed.js opens
    the chat at once, linked, and the link leaves both address bars; other fragment
    parameters of the website stay."""
    await add_stay(live, tenant, "LINK-79")
    with hotel_website(live, tenant.slug, "/contact") as website:
        page_url = website + "/contact?lang=en"
        url = await reservations.link_url(
            live.container.deps, tenant.hotel_id, tenant.slug, "LINK-79",
            base_url=live.url, site_url=page_url,
        )  # fmt: skip
        await page.goto(url.replace("#", "#tab=rooms&", 1))
        frame = page.frame_locator("iframe[title='Chat with the hotel']")
        await expect(frame.locator("#chat-status")).to_have_text("online")
        assert page.url == page_url + "#tab=rooms"
        (conversation,) = await linked_conversations(admin, "LINK-79")
        chat = next(f for f in page.frames if f.url.startswith(live.url))
        assert chat.url == f"{live.url}/chat/{tenant.slug}?embed=1"
        await frame.locator("#chat-body").fill("When do I arrive?")
        await frame.locator("#chat-body").press("Enter")
        await expect(frame.locator(".bubble.guest")).to_have_text("When do I arrive?")
        count = "SELECT count(*) FROM messages WHERE conversation_id = $1"
        assert await admin.fetchval(count, conversation) == 1


async def test_a_forged_website_link_opens_the_widget_but_links_nothing(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await add_stay(live, tenant, "LINK-80")
    with hotel_website(live, tenant.slug) as website:
        await page.goto(website + "/#hotelchat-r=forged.link.token")
        frame = page.frame_locator("iframe[title='Chat with the hotel']")
        # A forged link still opens the chat (the widget cannot tell), but links nothing.
        await expect(frame.locator("#chat-status")).to_have_text("online")
        assert page.url == website + "/"
        await page.goto(website + "/")
        await expect(page.locator("iframe")).to_have_count(0)
        assert await linked_conversations(admin, "LINK-80") == []
