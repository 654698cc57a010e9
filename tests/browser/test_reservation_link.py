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
