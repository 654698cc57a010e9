"""S1: Socket.IO round trip, the product's agent and guest paths vs a bare python-socketio server
(`loadtest/bare_socketio.py`: same Hypercorn/ASGI stack, an ack-only handler) in the same run.

Agents connect to `/agent` with their session cookie and `watch` a conversation of their own
(one web-chat guest each); guests connect to `/guest` with their token. The message is the
`typing` event each side sends while someone types, answered through the ack (`{"ok": true}`):
on the product it reads the socket's session, checks the conversation and, at most once a second
per socket, tells the other side. Latency is from each message's due time (open loop over all
clients in turn) until its ack arrives; an ack not back within 5 s is an error. At each offered
rate the three targets run one after the other (their order rotating per step), so they share the
machine's state of the moment.

Run:  .venv/bin/python -m loadtest s1 [--quick] [--clients 100,200] [--rates 500,1000,...]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import psutil

from loadtest import harness, socket_clients
from loadtest.harness import fmt, log
from loadtest.socket_clients import Tab, connect_all, connect_tab

NAME = "s1_socketio"
ACK_TIMEOUT = 5.0
P99_LIMIT_MS = 100.0
COMPARE_RATE = 2000.0
BARE, AGENT, GUEST = "bare python-socketio", "agent (/agent typing)", "guest (/guest typing)"


def ceiling(steps: list[dict[str, Any]], p99_limit_ms: float = P99_LIMIT_MS) -> float | None:
    """The highest offered rate (messages/s) of a step with p99 under `p99_limit_ms` and no
    errors; None when no step held."""
    held = [s["offered"] for s in steps if s["errors"] == 0 and s["p99_ms"] < p99_limit_ms]
    return max(held, default=None)


def p99_at(steps: list[dict[str, Any]], rate: float) -> float:
    """The p99 (ms) of the step offered at `rate`; NaN when there is none."""
    return next((s["p99_ms"] for s in steps if s["offered"] == rate), float("nan"))


def verdict(series: dict[str, list[dict[str, Any]]], clients: list[int]) -> list[dict[str, Any]]:
    """Per client count and product path: the ceilings (highest rate at p99 < 100 ms with no
    errors) of the path and of bare, their ratio, and the p99 ratio at 2,000 msgs/s."""
    rows = []
    for n in clients:
        bare = series[f"{BARE}, {n} clients"]
        for path in (AGENT, GUEST):
            steps = series[f"{path}, {n} clients"]
            mine, theirs = ceiling(steps), ceiling(bare)
            ratio = (mine or 0.0) / theirs if theirs else float("nan")
            rows.append({
                "clients": n, "path": path, "ceiling": mine, "bare_ceiling": theirs,
                "ceiling_ratio": ratio,
                "p99_ratio_at_2000": p99_at(steps, COMPARE_RATE) / p99_at(bare, COMPARE_RATE),
            })  # fmt: skip
    return rows


def caller(group: list[Tab], event: str, data: Any) -> Callable[[int], Awaitable[str]]:
    """Message i: `event` from socket i (round robin) with `data` (or `data(socket index)`)."""

    async def call(i: int) -> str:
        tab = group[i % len(group)]
        payload = data(i % len(group)) if callable(data) else data
        return await tab.call(event, payload, ACK_TIMEOUT)

    return call


def cpu_seconds() -> float:
    """User + system CPU time of this process (the load generator) so far (seconds)."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


async def sweep(
    base: str, bare_base: str, stack: harness.Stack, clients: list[int], rates: list[float],
    seconds: float, servers: dict[str, harness.Proc],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:  # fmt: skip
    series: dict[str, list[dict[str, Any]]] = {}
    setup: dict[str, Any] = {}
    most = max(clients)
    guests = await socket_clients.guest_sessions(base, most)
    agents = await socket_clients.open_agents(stack, most)
    log(f"{most} guest sessions and {most} agents ready")
    for n in clients:
        took = 0.0
        groups: list[list[Tab]] = []
        for kind, opens in (
            ("bare", [partial(connect_tab, bare_base, "/guest") for _ in range(n)]),
            ("agent", [partial(connect_tab, base, "/agent", cookie=a.token)
                       for a in agents[:n]]),
            ("guest", [partial(connect_tab, base, "/guest", token=g.token, address=g.address)
                       for g in guests[:n]]),
        ):  # fmt: skip
            group, failures, seconds_taken = await connect_all(opens, concurrency=20, label=kind)
            took += seconds_taken
            setup[f"{n} clients {kind}"] = {"connect_failures": dict(failures),
                                            "connect_seconds": seconds_taken}  # fmt: skip
            if failures:
                raise RuntimeError(f"{kind}: {sum(failures.values())} of {n} sockets failed: "
                                   f"{dict(failures)}")  # fmt: skip
            groups.append(group)
        bare, agent_tabs, guest_tabs = groups
        tabs = [*bare, *agent_tabs, *guest_tabs]
        # Each agent watches the conversation of one guest (the dashboard's open conversation).
        conversation_of = [g.conversation_id for g in guests[:n]]
        for tab, conversation_id in zip(agent_tabs, conversation_of, strict=True):
            answer = await tab.call("watch", {"conversation_id": conversation_id}, ACK_TIMEOUT)
            if answer != "ok":
                raise RuntimeError(f"watch: {answer}")
        log(f"{n} clients: {len(tabs)} sockets connected in {took:.1f} s, agents watching")

        targets = [
            (BARE, caller(bare, "typing", {"conversation_id": 1})),
            (AGENT, caller(agent_tabs, "typing",
                           lambda k, ids=conversation_of: {"conversation_id": ids[k]})),
            (GUEST, caller(guest_tabs, "typing", {})),
        ]  # fmt: skip
        for label, warm in targets:
            series.setdefault(f"{label}, {n} clients", [])
            for i in range(20):  # warm up each path
                await warm(i)
        for k, rate in enumerate(rates):
            for label, call in targets[k % 3 :] + targets[: k % 3]:
                key = f"{label}, {n} clients"
                server = servers[BARE if label == BARE else "web"]
                cpu = (cpu_seconds(), server.cpu_seconds(), time.monotonic())
                samples = await harness.open_loop(rate, seconds, call, label=key)
                step = harness.summary(samples, seconds) | {"offered": rate, "clients": n}
                took = time.monotonic() - cpu[2]
                # Cores busy during the step: the generator's own and the server's.
                step["generator_cores"] = (cpu_seconds() - cpu[0]) / took
                step["server_cores"] = (server.cpu_seconds() - cpu[1]) / took
                step["latencies_ms"] = [round(s.latency * 1000, 2) for s in samples
                                        if s.outcome == "ok"]  # fmt: skip
                series[key].append(step)
                log(f"{key} at {rate:g}/s: p50 {fmt(step['p50_ms'])} ms, p99 "
                    f"{fmt(step['p99_ms'])} ms, {step['throughput']:.0f}/s, cores: generator "
                    f"{step['generator_cores']:.2f} server {step['server_cores']:.2f}, "
                    f"{step['errors']} errors {step['outcomes']}")  # fmt: skip
                await asyncio.sleep(1.0)
        await socket_clients.close_all(tabs)
        await asyncio.sleep(1.0)
    return series, setup


def table(series: dict[str, list[dict[str, Any]]], clients: list[int]) -> str:
    lines = [
        "| clients | offered msgs/s | path | p50 ms | p99 ms | acked/s | errors | p99 ÷ bare p99 "
        "| cores: generator / server |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in clients:
        bare = series[f"{BARE}, {n} clients"]
        for i, b in enumerate(bare):
            for path in (BARE, AGENT, GUEST):
                s = series[f"{path}, {n} clients"][i]
                ratio = s["p99_ms"] / b["p99_ms"] if b["p99_ms"] > 0 else float("nan")
                lines.append(
                    f"| {n} | {s['offered']:g} | {path} | {fmt(s['p50_ms'])} | "
                    f"{fmt(s['p99_ms'])} | {s['throughput']:.0f} | {s['errors']} | "
                    f"{fmt(ratio, 2)} | {s.get('generator_cores', float('nan')):.2f} / "
                    f"{s.get('server_cores', float('nan')):.2f} |"
                )
    return "\n".join(lines)


def verdict_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| clients | path | highest msgs/s at p99 < 100 ms | bare's | ratio (target ≥ 0.8) "
        "| p99 ÷ bare at 2,000 msgs/s (target ≤ 1.25) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        held = "none" if r["ceiling"] is None else f"{r['ceiling']:g}"
        bare = "none" if r["bare_ceiling"] is None else f"{r['bare_ceiling']:g}"
        lines.append(f"| {r['clients']} | {r['path']} | {held} | {bare} | "
                     f"{fmt(r['ceiling_ratio'], 2)} | "
                     f"{fmt(r['p99_ratio_at_2000'], 2)} |")  # fmt: skip
    return "\n".join(lines)


def run(quick: bool, clients: list[int], rates: list[float], *,
        docs: Any = harness.DOCS) -> dict[str, Any]:  # fmt: skip
    seconds = 2.0 if quick else 5.0
    socket_clients.raise_open_files()
    start = harness.machine()
    stack = harness.Stack()
    try:
        web = stack.serve(TRUSTED_PROXY_HOPS="1")
        bare, bare_base = socket_clients.start_bare(stack)
        series, setup = asyncio.run(sweep(stack.web_url, bare_base, stack, clients, rates, seconds,
                                          {BARE: bare, "web": web}))  # fmt: skip
        rss = {"web_bytes": web.rss_bytes(), "bare_bytes": bare.rss_bytes()}
    finally:
        stack.close()
    rows = verdict(series, clients)
    data = {
        "scenario": NAME, "quick": quick, "seconds_per_step": seconds, "clients": clients,
        "rates": rates, "machine": start, "machine_end": harness.machine(), "setup": setup,
        "rss_after": rss, "verdict": rows, "series": series,
    }  # fmt: skip
    for n in clients:
        harness.plot_sweep(
            docs / "benchmarks" / f"{NAME}_{n}.png",
            f"S1: Socket.IO ack round trip, {n} clients, product vs bare python-socketio",
            {k.removesuffix(f", {n} clients"): v for k, v in series.items()
             if k.endswith(f", {n} clients")},
        )  # fmt: skip
    plots = "\n".join(f"![S1 {n} clients](benchmarks/{NAME}_{n}.png)" for n in clients)
    body = (
        ("**Quick run (smoke test: few clients, short steps); not a measurement.**\n\n"
         if quick else "")
        + "One `hotelchat serve` (TRUSTED_PROXY_HOPS=1) and the bare python-socketio server "
        "(same Hypercorn/ASGI stack, an ack-only `typing` handler) running side by side; the "
        "load generator is one Python process with one python-socketio client (websocket) per "
        "simulated tab, so its own CPU is part of every figure, the bare one's too. Agents: "
        "session cookie, `/agent`, each watching a guest's conversation, sending `typing` "
        "for it; guests: token, `/guest`, `typing`. Open loop over the clients in turn, "
        f"{seconds:g} s per step, the three targets interleaved per step; latency from the "
        f"due time to the ack; ack timeout {ACK_TIMEOUT:g} s. 'cores' = CPU seconds per "
        "second during the step of the load generator and of the server process measured "
        "(PostgreSQL and Redis not included); a generator near 1.0 is the limit, not the "
        "server.\n\n"
        + verdict_table(rows) + "\n\n" + table(series, clients) + "\n\n" + plots + "\n"
    )  # fmt: skip
    command = ".venv/bin/python -m loadtest s1" + (" --quick" if quick else "")
    harness.write_report(NAME, "S1: Socket.IO round trip vs bare python-socketio", command, body,
                         data, docs=docs)  # fmt: skip
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few clients, short steps")
    parser.add_argument("--clients", default=None, help="comma-separated client counts")
    parser.add_argument("--rates", default=None, help="comma-separated offered msgs/s (total)")
    args = parser.parse_args(argv)
    clients = ([int(c) for c in args.clients.split(",")] if args.clients
               else [20] if args.quick else [100, 200])  # fmt: skip
    full = [500.0, 1000.0, 2000.0, 3000.0, 4000.0]
    rates = ([float(r) for r in args.rates.split(",")] if args.rates
             else [200.0, 500.0] if args.quick else full)  # fmt: skip
    if any(math.isnan(r) or r <= 0 for r in rates):
        parser.error("rates must be positive")
    run(args.quick, clients, rates)


if __name__ == "__main__":
    main()
