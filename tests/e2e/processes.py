"""Real processes for end-to-end tests: one started `hotelchat` process, and waits on what they
do (a condition, a server's /readyz)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop. Returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, like an OOM kill or a node loss."""
        self.popen.kill()
        self.popen.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


Spawn = Callable[..., Process]


async def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `check()` (sync or async) every 0.2 s until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


async def wait_ready(base_url: str, timeout: float = 30.0, *, path: str = "/readyz") -> None:
    """Wait until GET `base_url` + `path` (HotelChat's readiness probe unless told) answers
    200; fail after `timeout` seconds."""

    async def ready() -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(base_url + path) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    await wait_until(ready, timeout, base_url + path)
