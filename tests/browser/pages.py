"""What the browser tests share: logging in through the real form, a hostile message, and
screenshots for the docs."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Page, expect

from tests.conftest import AGENT_PASSWORD
from tests.live import Live

XSS = '<img src=x onerror="window.__pwned=1"> <a href="javascript:window.__pwned=2">click</a>'


async def screenshot(page: Page, name: str) -> None:
    """Save `name`.png where HOTELCHAT_SCREENSHOTS points, if it does."""
    folder = os.environ.get("HOTELCHAT_SCREENSHOTS")
    if folder:
        # Playwright creates the folder itself.
        await page.screenshot(path=str(Path(folder) / f"{name}.png"))


async def log_in(page: Page, live: Live, email: str) -> None:
    await page.goto(live.url + "/dashboard")
    await expect(page).to_have_url(live.url + "/login")
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', AGENT_PASSWORD)
    await page.click('button[type="submit"]')
    await expect(page).to_have_url(live.url + "/dashboard")
    await expect(page.locator("#connection")).to_have_text("live")
