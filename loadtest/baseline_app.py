"""The one-process baseline of S6: what a guest-messaging app does at its simplest, in one
aiohttp process: check the webhook's signature, store the message (one INSERT, committed), answer
Twilio, then in the same process ask the model (official `openai` client, streamed) and send the
answer through Twilio's Messages API. No queue, no worker, no retrieval, no lease: the floor the
product's architecture is compared against.

Run: python -m loadtest.baseline_app --port P --dsn DSN --openai-url URL --twilio-url URL
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import asyncpg
import openai
from aiohttp import web

from hotelchat.adapters.twilio import sign
from loadtest.harness import ACCOUNT, AUTH_TOKEN, KNOWLEDGE, OPENAI_KEY

SCHEMA = """CREATE TABLE IF NOT EXISTS baseline_messages (
    id bigserial PRIMARY KEY, sid text UNIQUE, guest text NOT NULL, direction text NOT NULL,
    body text NOT NULL, created timestamptz NOT NULL DEFAULT now())"""
PROMPT = "You are the hotel's assistant. Hotel facts:\n" + "\n".join(
    f"[{i}] {title}: {body}" for i, (title, body) in enumerate(KNOWLEDGE, 1)
)
MAX_REPLIES = 2000  # replies in progress at once; beyond, the webhook answers 503


class Baseline:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, _app: web.Application) -> None:
        self.pool = await asyncpg.create_pool(self.args.dsn, min_size=2, max_size=10)
        await self.pool.execute(SCHEMA)
        self.model = openai.AsyncOpenAI(
            api_key=OPENAI_KEY, base_url=self.args.openai_url + "/v1", timeout=30, max_retries=2
        )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def stop(self, _app: web.Application) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.http.close()
        await self.model.close()
        await self.pool.close()

    async def webhook(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = self.args.public_url + request.path
        if request.headers.get("X-Twilio-Signature") != sign(AUTH_TOKEN, url, form):
            return web.Response(status=403)
        if len(self.tasks) >= MAX_REPLIES:
            return web.Response(status=503, headers={"Retry-After": "1"})
        guest = form["From"].removeprefix("whatsapp:")
        inserted = await self.pool.fetchval(
            """INSERT INTO baseline_messages (sid, guest, direction, body)
               VALUES ($1, $2, 'inbound', $3) ON CONFLICT (sid) DO NOTHING RETURNING id""",
            form["MessageSid"],
            guest,
            form["Body"],
        )
        if inserted is not None:
            task = asyncio.get_running_loop().create_task(self.reply(form, guest))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return web.Response(text="<Response/>", content_type="text/xml")

    async def reply(self, form: dict[str, str], guest: str) -> None:
        stream = await self.model.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": form["Body"]},
            ],
            stream=True,
        )
        pieces = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        text = "".join(pieces)
        async with self.http.post(
            f"{self.args.twilio_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
            data={"To": form["From"], "From": form["To"], "Body": text},
            auth=aiohttp.BasicAuth(ACCOUNT, AUTH_TOKEN),
        ) as response:
            response.raise_for_status()
        await self.pool.execute(
            "INSERT INTO baseline_messages (guest, direction, body) VALUES ($1, 'outbound', $2)",
            guest,
            text,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for option in ("--dsn", "--openai-url", "--twilio-url", "--public-url"):
        parser.add_argument(option, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    baseline = Baseline(args)
    app = web.Application()
    app.on_startup.append(baseline.start)
    app.on_cleanup.append(baseline.stop)
    app.router.add_post("/webhooks/twilio/whatsapp", baseline.webhook)
    app.router.add_get("/healthz", lambda _r: asyncio.sleep(0, web.json_response({"ok": True})))
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
