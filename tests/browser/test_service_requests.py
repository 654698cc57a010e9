"""The dashboard's service requests and AI budget in headless Chromium: a request the assistant
files while the page is open appears without a reload (its text shown as text), opens its
conversation and is closed by an agent; the budget banner appears at 80 %, changes at 100 %,
shows on load, and goes when a manager raises the budget in the settings form."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from playwright.async_api import Page, expect

from hotelchat.services import notify, service_requests
from tests.browser.pages import XSS, log_in, screenshot
from tests.conftest import Tenant, create_agent
from tests.helpers import post_webhook
from tests.live import Live

REACHED = (
    "AI budget reached: the assistant is paused and new conversations go to staff until the "
    "budget is raised or the month turns"
)


async def guest_asks(live: Live, tenant: Tenant, admin: asyncpg.Connection, text: str) -> int:
    """A guest writes on WhatsApp; returns the id of their message."""
    await post_webhook(live.url, tenant, text)
    message_id: int = await admin.fetchval(
        "SELECT max(id) FROM messages WHERE direction = 'inbound'"
    )
    return message_id


async def file_request(
    live: Live, tenant: Tenant, admin: asyncpg.Connection, message_id: int, kind: str, details: str
) -> int:
    """What the assistant's `create_service_request` tool does for `message_id`."""
    conversation_id: int = await admin.fetchval(
        "SELECT conversation_id FROM messages WHERE id = $1", message_id
    )
    request = await service_requests.open_request(
        live.container.deps, tenant.hotel_id, conversation_id,
        kind=kind, details=details, message_id=message_id,
    )  # fmt: skip
    return request.id


async def test_a_request_appears_live_opens_its_conversation_and_is_closed(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await create_agent(admin, "bo@a.test", [tenant.slug], name="Bo")
    await log_in(page, live, "ana@a.test")
    await expect(page.locator("#no-requests")).to_be_visible()
    await expect(page.locator("#assistant-form")).to_have_count(0)  # agents: no settings form

    message_id = await guest_asks(live, tenant, admin, "Could I get a taxi at 6am?")
    await expect(page.locator(".conversation-row")).to_have_count(1)
    taxi = await file_request(live, tenant, admin, message_id, "taxi", "Taxi to PMI at 6am " + XSS)

    item = page.locator(f'#requests .request[data-id="{taxi}"]')
    await expect(item).to_be_visible()
    await expect(item.locator(".kind")).to_have_text("Taxi")
    await expect(item.locator(".guest")).to_have_text("Ana García")
    await expect(item.locator(".when")).to_have_text("just now")
    await expect(item.locator(".details")).to_have_text("Taxi to PMI at 6am " + XSS)
    await expect(page.locator("#requests-count")).to_have_text("1")
    await expect(page.locator("#no-requests")).to_be_hidden()
    assert await page.locator("#requests img").count() == 0
    assert await page.evaluate("window.__pwned") is None

    await item.locator(".open-link").click()
    await expect(page.locator("#guest-name")).to_have_text("Ana García")
    await expect(page.locator("#messages .bubble.guest .text")).to_have_text(
        "Could I get a taxi at 6am?"
    )
    await screenshot(page, "service-requests")

    await item.locator('button[data-close="done"]').click()
    await expect(item).to_have_count(0)
    await expect(page.locator("#no-requests")).to_be_visible()
    await expect(page.locator("#requests-count")).to_be_hidden()
    row = await admin.fetchrow(
        """SELECT r.status, a.display_name FROM service_requests r
           JOIN agents a ON a.id = r.closed_by WHERE r.id = $1""",
        taxi,
    )
    assert row is not None and tuple(row) == ("done", "Ana")

    # Another agent cancels a request elsewhere: it goes from this screen too.
    towels = await file_request(live, tenant, admin, message_id, "amenities", "Two towels")
    await expect(page.locator(f'#requests .request[data-id="{towels}"]')).to_be_visible()
    bo = await admin.fetchval("SELECT id FROM agents WHERE email = 'bo@a.test'")
    closed = await live.container.deps.service_requests.close(
        tenant.hotel_id, towels, bo, "cancelled"
    )
    await notify.service_request_changed(live.container.deps, tenant.hotel_id, closed)
    await expect(page.locator("#requests .request")).to_have_count(0)


async def spend(admin: asyncpg.Connection, tenant: Tenant, dollars: str) -> None:
    """A model reply that cost `dollars`, now."""
    conversation_id = await admin.fetchval(
        "SELECT id FROM conversations WHERE hotel_id = $1", tenant.hotel_id
    )
    await admin.execute(
        """INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status,
                                 created_at, cost_usd)
           VALUES ($1, $2, 'outbound', 'ai', 'a reply', 'sent', $3, $4)""",
        tenant.hotel_id,
        conversation_id,
        datetime.now(UTC),
        Decimal(dollars),
    )


async def crossed(live: Live, tenant: Tenant) -> None:
    """What the reply path does when a reply's cost crosses 80 % or 100 % of the budget."""
    deps = live.container.deps
    await notify.budget_changed(
        deps, tenant.hotel_id, await deps.hotels.month_spend(tenant.hotel_id)
    )


async def test_the_budget_banner_warns_at_80_and_stops_at_100_until_raised(
    page: Page, live: Live, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "max@a.test", [tenant.slug], name="Max", role="manager")
    await admin.execute("UPDATE hotels SET monthly_budget_usd = 10 WHERE id = $1", tenant.hotel_id)
    await guest_asks(live, tenant, admin, "Hello")
    await spend(admin, tenant, "5")
    await log_in(page, live, "max@a.test")
    banner = page.locator("#budget-banner")
    await expect(page.locator("#spend")).to_have_text("AI spend this month: $5.00 of $10.00 (50 %)")
    await expect(banner).to_be_hidden()

    await spend(admin, tenant, "3.3")
    await crossed(live, tenant)
    await expect(banner).to_have_text("AI budget 83 % used this month")
    await expect(banner).to_have_class("budget-banner warning")

    await spend(admin, tenant, "2")
    await crossed(live, tenant)
    await expect(banner).to_have_text(REACHED)
    await expect(banner).to_have_class("budget-banner reached")
    await expect(page.locator("#spend")).to_have_text(
        "AI spend this month: $10.30 of $10.00 (103 %)"
    )

    # Shown on load too.
    await page.reload()
    await expect(page.locator("#connection")).to_have_text("live")
    await expect(banner).to_have_text(REACHED)
    await screenshot(page, "budget-reached")

    # A manager raises the budget in the settings form: the banner goes.
    await page.locator("#assistant-settings summary").click()
    await expect(page.locator("#budget")).to_have_value("10")
    await expect(page.locator("#context-tokens")).to_have_value("2500")
    await expect(page.locator("#model")).to_have_attribute("placeholder", "default (gpt-4o-mini)")
    await page.fill("#budget", "20")
    await page.click("#assistant-save")
    await expect(page.locator("#assistant-notice")).to_have_text("Saved.")
    await screenshot(page, "assistant-settings")
    await expect(banner).to_be_hidden()
    await expect(page.locator("#spend")).to_have_text(
        "AI spend this month: $10.30 of $20.00 (51 %)"
    )
    assert await admin.fetchval(
        "SELECT monthly_budget_usd FROM hotels WHERE id = $1", tenant.hotel_id
    ) == Decimal("20.00")  # fmt: skip

    # A bad value is refused with the server's message and changes nothing.
    await page.fill("#context-tokens", "150000")
    await page.evaluate("document.getElementById('context-tokens').removeAttribute('max')")
    await page.click("#assistant-save")
    await expect(page.locator("#assistant-error")).to_contain_text("context tokens")
    assert await admin.fetchval(
        "SELECT context_token_budget FROM hotels WHERE id = $1", tenant.hotel_id
    ) == 2500  # fmt: skip

    # Turning the assistant off shows on the page.
    await page.fill("#context-tokens", "3000")
    await page.uncheck("#ai-enabled")
    await page.click("#assistant-save")
    await expect(page.locator("#spend")).to_contain_text("the assistant is off")
    assert not await admin.fetchval("SELECT ai_enabled FROM hotels WHERE id = $1", tenant.hotel_id)
