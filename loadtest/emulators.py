"""The OpenAI and Twilio emulators in one process of their own (so they do not take the load
generator's CPU), with what the load tests need on top:

- `GET  <twilio>/_bench/sends?since=N`: the sends from the N-th on, as `[to, unix time]` (to the
  microsecond; Twilio's own `date_created` has whole seconds), and `next`.
- `GET  <openai>/_bench/model`: how long the emulated model took per chat request (seconds),
  the model's own time to compare end-to-end latency against.
- `POST <openai>/_bench/fail?seconds=S`: answer every chat request with a 500 for S seconds (the
  model failing, for `loadtest.faults`).

Run: python -m loadtest.emulators --openai-port P --twilio-port Q [--time-to-first-token 0.5]
[--tokens-per-second 50]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

from aiohttp import web

from hotelchat.emulators import openai_api
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import EmulatedMessage, TwilioEmulator

MAX_SENDS = 200_000


class RecordingTwilio(TwilioEmulator):
    """The Twilio emulator, recording each accepted send with its time."""

    def __init__(self) -> None:
        super().__init__(callbacks=False)
        self.sends: list[tuple[str, float]] = []

    def _accept(self, message: EmulatedMessage, failure: int | None = None) -> None:
        if len(self.sends) < MAX_SENDS:
            self.sends.append((message.to.removeprefix("whatsapp:"), time.time()))
        super()._accept(message, failure)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/_bench/sends", self._bench_sends)
        return app

    async def _bench_sends(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response({"sends": self.sends[since:], "next": len(self.sends)})


class TimedOpenAI(OpenAIEmulator):
    """The OpenAI emulator, timing each chat answer and failing on request."""

    def __init__(self, time_to_first_token: float, tokens_per_second: float) -> None:
        super().__init__(
            time_to_first_token=time_to_first_token, tokens_per_second=tokens_per_second
        )
        self.durations: collections.deque[float] = collections.deque(maxlen=10_000)
        self.failing_until = 0.0

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/_bench/model", self._bench_model)
        app.router.add_post("/_bench/fail", self._bench_fail)
        return app

    def _take_fault(self, endpoint: openai_api.Endpoint) -> openai_api.Fault | None:
        if endpoint == "chat" and time.monotonic() < self.failing_until:
            return openai_api.SERVER_ERROR
        return super()._take_fault(endpoint)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        response = await super()._chat(request)
        if response.status == 200:
            self.durations.append(time.monotonic() - started)
        return response

    async def _bench_model(self, _request: web.Request) -> web.Response:
        return web.json_response({"durations": list(self.durations)})

    async def _bench_fail(self, request: web.Request) -> web.Response:
        self.failing_until = time.monotonic() + float(request.query.get("seconds", "30"))
        return web.Response(status=204)


async def serve(args: argparse.Namespace) -> None:
    runners = []
    for application, port in (
        (TimedOpenAI(args.time_to_first_token, args.tokens_per_second).app(), args.openai_port),
        (RecordingTwilio().app(), args.twilio_port),
    ):
        runner = web.AppRunner(application, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openai-port", type=int, required=True)
    parser.add_argument("--twilio-port", type=int, required=True)
    parser.add_argument("--time-to-first-token", type=float, default=0.5)
    parser.add_argument("--tokens-per-second", type=float, default=50.0)
    args = parser.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
