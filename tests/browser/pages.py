"""What the browser tests share: logging in through the real form, a hostile message, a hotel
website that embeds the chat, and screenshots for the docs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from playwright.async_api import Page, expect

from hotelchat.emulators.server import ServerThread
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


@contextmanager
def hotel_website(live: Live, slug: str, path: str = "/") -> Iterator[str]:
    """The hotel's own website, on another origin (another port) than HotelChat's: one page at
    `path` that carries embed.js for hotel `slug`. Yields the site's base URL."""
    html = (
        "<!doctype html><html><body><h1>Welcome to our hotel</h1>"
        f'<script src="{live.url}/static/embed.js" data-hotel="{slug}"></script>'
        "</body></html>"
    )

    def site() -> web.Application:
        async def page(_request: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        app = web.Application()
        app.router.add_get(path, page)
        return app

    server = ServerThread(site).start()
    try:
        yield server.url
    finally:
        server.stop()
