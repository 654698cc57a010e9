"""What every scenario in `loadtest/` shares: the system under test in real processes (embedded
PostgreSQL and Redis, `hotelchat serve`, `hotelchat worker`s, the emulators in their own process),
an open-loop load generator, summaries, the exactly-once check, and the report (raw JSON, PNG
plots and a section of `docs/benchmarks.md`).

Open loop: request i is due at `start + i / rate` whatever happened to the ones before (Twilio and
browsers do not wait for our answers), and its latency is measured from that due time, so a
stalled server shows as latency instead of as a lower offered rate (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    free_port,
    start_postgres,
    start_redis,
)
from hotelchat.adapters.postgres.migrate import migrate
from hotelchat.adapters.postgres.provisioning import open_provisioning

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "benchmarks"
ACCOUNT = "AC" + "0" * 32
AUTH_TOKEN = "b" * 32
NUMBER = "+15550100009"
HOTEL = "bench-hotel"
OPENAI_KEY = "sk-bench-" + "k" * 24
ENCRYPTION_KEY = "aG90ZWxjaGF0LWJlbmNoLWVuY3J5cHRpb24ta2V5ISE="  # 32 bytes, urlsafe base64
KNOWLEDGE = (
    ("Parking", "Parking costs EUR 18 per day in our underground garage; no booking needed."),
    ("Breakfast", "Breakfast is served from 7:00 to 10:30 in the Olivo restaurant."),
    ("Check-in", "Check-in is from 15:00 and check-out is until 12:00."),
)


def log(message: str) -> None:
    """A progress line on stderr, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel and the load average now."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- open-loop load ------------------------------------------------------------------------


@dataclass
class Sample:
    """One request: when it was due (seconds since the step began), its latency from that due
    time (seconds), and its outcome ("ok", an HTTP status, or an error class)."""

    due: float
    latency: float
    outcome: str


async def open_loop(
    rate: float,
    duration: float,
    call: Callable[[int], Awaitable[str]],
    *,
    max_in_flight: int = 2000,
    label: str = "",
) -> list[Sample]:
    """Start `call(i)` at `rate` per second for `duration` seconds, each at its due time, and
    wait for all (each call must bound its own time). Returns one `Sample` per request; a
    request that would exceed `max_in_flight` is not sent and counts as "shed_by_client"."""
    count = max(1, int(rate * duration))
    samples: list[Sample] = []
    in_flight = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, due: float) -> None:
        nonlocal in_flight
        try:
            outcome = await call(i)
        except Exception as exc:  # the outcome is data here: count it, never stop the run
            outcome = type(exc).__name__
        finally:
            in_flight -= 1
        samples.append(Sample(due - start, loop.time() - due, outcome))

    tasks: set[asyncio.Task[None]] = set()
    next_progress = start + 2
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= max_in_flight:
            samples.append(Sample(due - start, 0.0, "shed_by_client"))
            continue
        in_flight += 1
        task = loop.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if loop.time() >= next_progress:
            next_progress += 2
            log(f"  {label} {rate:g}/s: {i + 1}/{count} sent, {in_flight} in flight")
    if tasks:
        await asyncio.gather(*tasks)
    return samples


def percentile(values: list[float], p: float) -> float:
    """The `p`-th percentile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(samples: list[Sample], duration: float) -> dict[str, Any]:
    """Latency percentiles of the successful requests (milliseconds), throughput (successful
    requests per second of the step) and the outcomes counted."""
    ok = [s.latency * 1000 for s in samples if s.outcome == "ok"]
    outcomes = Counter(s.outcome for s in samples)
    span = max(duration, max((s.due + s.latency for s in samples), default=duration))
    return {
        "sent": len(samples),
        "ok": len(ok),
        "errors": len(samples) - len(ok),
        "outcomes": dict(outcomes),
        "p50_ms": percentile(ok, 50),
        "p95_ms": percentile(ok, 95),
        "p99_ms": percentile(ok, 99),
        "max_ms": max(ok, default=float("nan")),
        "throughput": len(ok) / span,
    }


# --- exactly once --------------------------------------------------------------------------


@dataclass
class ExactlyOnce:
    """Replies counted per accepted inbound message (one guest number each): `missing` got
    none, `duplicated` got more than one, `unexpected` are replies to guests whose webhook
    was not accepted (a committed message whose answer the client never saw)."""

    accepted: int
    answered: int
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unexpected: int = 0

    @property
    def holds(self) -> bool:
        return not self.missing and not self.duplicated


def exactly_once(accepted: Iterable[str], sent_to: Iterable[str]) -> ExactlyOnce:
    """Check that every guest in `accepted` got exactly one of the sends in `sent_to`."""
    wanted = set(accepted)
    counts = Counter(sent_to)
    return ExactlyOnce(
        accepted=len(wanted),
        answered=sum(1 for guest in wanted if counts[guest] >= 1),
        missing=sorted(g for g in wanted if counts[g] == 0),
        duplicated={g: n for g, n in counts.items() if n > 1 and g in wanted},
        unexpected=sum(n for g, n in counts.items() if g not in wanted),
    )


# --- the system under test -----------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children so far (seconds)."""
        try:
            root = psutil.Process(self.popen.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for p in tree:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        try:
            return int(psutil.Process(self.popen.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def wait_http(url: str, timeout: float = 60.0, proc: Proc | None = None) -> None:
    """Wait until GET `url` answers 200; raise RuntimeError after `timeout` seconds or when
    `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


class Stack:
    """Embedded PostgreSQL and Redis with one provisioned hotel (a WhatsApp number and three
    knowledge entries), the emulators process, and `hotelchat` processes started on demand."""

    def __init__(self, *, time_to_first_token: float = 0.5, tokens_per_second: float = 50.0):
        self.root = Path(tempfile.mkdtemp(prefix="hc-loadtest-"))
        self.procs: list[Proc] = []
        log(f"starting PostgreSQL and Redis in {self.root}")
        self.postgres: EmbeddedPostgres = start_postgres(self.root / "pg", database="bench")
        self.redis: EmbeddedRedis = start_redis(self.root / "redis", persist=False)
        asyncio.run(self._prepare())
        self.openai_port, self.twilio_port = free_port(), free_port()
        self.emulators = self.spawn(
            "emulators",
            [
                sys.executable, "-m", "loadtest.emulators",
                "--openai-port", str(self.openai_port),
                "--twilio-port", str(self.twilio_port),
                "--time-to-first-token", str(time_to_first_token),
                "--tokens-per-second", str(tokens_per_second),
            ],
            dict(os.environ),
        )  # fmt: skip
        wait_http(self.twilio_url + "/_bench/sends?since=0", proc=self.emulators)
        self.web_port = free_port()

    @property
    def twilio_url(self) -> str:
        return f"http://127.0.0.1:{self.twilio_port}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.openai_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    async def _prepare(self) -> None:
        await migrate(self.postgres.admin_dsn, self.postgres.app_dsn)
        cipher = TokenCipher.from_setting(ENCRYPTION_KEY)
        async with open_provisioning(self.postgres.admin_dsn, cipher) as prov:
            await prov.ensure_chain("bench", "Bench")
            await prov.create_hotel(chain_slug="bench", slug=HOTEL, name="Bench Hotel")
            await prov.add_whatsapp_sender(
                hotel_slug=HOTEL, phone_number=NUMBER, account_sid=ACCOUNT, auth_token=AUTH_TOKEN
            )
            for title, body in KNOWLEDGE:
                await prov.add_knowledge(hotel_slug=HOTEL, title=title, body=body)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a `hotelchat` process of this deployment, plus `extra`."""
        return (
            dict(os.environ)
            | {
                "DATABASE_URL": self.postgres.app_dsn,
                "DATABASE_ADMIN_URL": self.postgres.admin_dsn,
                "REDIS_URL": self.redis.url,
                "PUBLIC_BASE_URL": self.web_url,
                "PORT": str(self.web_port),
                "TWILIO_API_BASE_URL": self.twilio_url,
                "OPENAI_API_KEY": OPENAI_KEY,
                "OPENAI_BASE_URL": self.openai_url + "/v1",
                "SECRET_KEY": "e" * 40,
                "ENCRYPTION_KEYS": ENCRYPTION_KEY,
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                "HOTELCHAT_STATE_DIR": str(self.root / "state"),
                "WORKER_METRICS_PORT": "0",
            }
            | extra
        )

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        path = self.root / f"{name}-{len(self.procs)}.log"
        with path.open("wb") as out:
            popen = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = Proc(name, popen, path)
        self.procs.append(proc)
        return proc

    def hotelchat(self, name: str, args: list[str], **env: str) -> Proc:
        return self.spawn(name, [sys.executable, "-m", "hotelchat", *args], self.env(**env))

    def serve(self, **env: str) -> Proc:
        """Start `hotelchat serve` and wait for its /readyz."""
        web = self.hotelchat("web", ["serve"], **env)
        wait_http(self.web_url + "/readyz", proc=web)
        return web

    def worker(self, metrics_port: int, **env: str) -> Proc:
        """Start `hotelchat worker` serving /metrics on `metrics_port`; wait for its /healthz."""
        worker = self.hotelchat("worker", ["worker"], WORKER_METRICS_PORT=str(metrics_port), **env)
        wait_http(f"http://127.0.0.1:{metrics_port}/healthz", timeout=90, proc=worker)
        return worker

    def flush_redis(self) -> None:
        """Empty Redis (queued jobs, leases) between configurations."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            client.flushall()
        finally:
            client.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.redis.stop()
        self.postgres.stop()

    @contextlib.contextmanager
    def running(self, *procs: Proc) -> Iterator[None]:
        """Stop `procs` on leaving the block."""
        try:
            yield
        finally:
            for proc in procs:
                proc.stop()


def question(i: int) -> str:
    """A guest's question, different every time: the product's response cache answers a
    repeated first question without the model, and these benchmarks measure the model path."""
    return f"Is there parking? (booking {secrets.token_hex(4)}, {i})"


_GUESTS = itertools.count(secrets.randbelow(10**4) * 10**4)


def new_guest() -> str:
    """A fresh E.164 guest number (one per inbound message, so replies map to messages): from a
    counter, so two messages of one run never share a number (random numbers could collide and
    look like a duplicate reply)."""
    return f"+1555{next(_GUESTS) % 10**8:08d}"


# --- Prometheus scraping -------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(url: str) -> dict[str, float]:
    """Sum of each `<metric>_sum` and `<metric>_count` (all labels added up) at `url`."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and (match[1].endswith("_sum") or match[1].endswith("_count")):
            labels = match[2] or ""
            key = match[1] + ("{reply}" if "reply_to_inbound" in labels else "")
            with contextlib.suppress(ValueError):
                totals[key] = totals.get(key, 0.0) + float(match[3])
    return totals


# --- report --------------------------------------------------------------------------------


def plot_sweep(path: Path, title: str, series: dict[str, list[dict[str, Any]]]) -> None:
    """Three panels over offered rate: latency p50/p99 (log scale), throughput, errors.
    `series` maps a label to its steps (each with offered, p50_ms, p99_ms, throughput, errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr, err) = plt.subplots(1, 3, figsize=(15, 4.5))
    for label, steps in series.items():
        rates = [s["offered"] for s in steps]
        (line,) = lat.plot(rates, [s["p99_ms"] for s in steps], marker="o", label=f"{label} p99")
        lat.plot(
            rates, [s["p50_ms"] for s in steps], marker=".", ls="--", color=line.get_color(),
            label=f"{label} p50",
        )  # fmt: skip
        thr.plot(rates, [s["throughput"] for s in steps], marker="o", label=label)
        err.plot(rates, [s["errors"] for s in steps], marker="o", label=label)
    top = max((s["offered"] for steps in series.values() for s in steps), default=1)
    thr.plot([0, top], [0, top], color="grey", lw=0.5, label="offered")
    lat.set(xlabel="offered rate (/s)", ylabel="latency (ms)", yscale="log", title="latency")
    thr.set(xlabel="offered rate (/s)", ylabel="served (/s)", title="throughput")
    err.set(xlabel="offered rate (/s)", ylabel="errors (count)", title="errors")
    for ax in (lat, thr, err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(
    name: str, title: str, command: str, body: str, data: dict[str, Any], *, docs: Path = DOCS
) -> Path:
    """Write `data` as docs/benchmarks/<name>.json and replace (or append) the section of
    docs/benchmarks.md between this scenario's markers with `title`, `command`, the machine
    (with the load average at start and end) and `body`. Returns the JSON path."""
    results = docs / "benchmarks"
    results.mkdir(parents=True, exist_ok=True)
    json_path = results / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
    m = data["machine"]
    section = "\n".join(
        [
            f"<!-- loadtest:{name} -->",
            f"## {title}",
            "",
            f"Reproduce: `{command}`  ",
            f"Recorded {m['date']} on {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB; "
            f"load average at start {m['load_average']}, at end "
            f"{data['machine_end']['load_average']}. Raw timings: "
            f"[`benchmarks/{name}.json`](benchmarks/{name}.json).",
            "",
            body.strip(),
            f"<!-- /loadtest:{name} -->",
        ]
    )
    md = docs / "benchmarks.md"
    text = md.read_text() if md.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- loadtest:{name} -->.*?<!-- /loadtest:{name} -->", re.DOTALL)
    text = (
        pattern.sub(lambda _m: section, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section + "\n"
    )
    md.write_text(text)
    log(f"wrote {json_path} and the {name} section of {md}")
    return json_path


def _jsonable(value: object) -> object:
    if isinstance(value, Sample | ExactlyOnce):
        return asdict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table: NaN as "n/a"."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
