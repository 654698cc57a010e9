"""S7: idle authenticated sockets on one web process, vs a bare python-socketio server
(`loadtest/bare_socketio.py`) in the same run.

1. Idle web-chat guests (token-authenticated `/guest` sockets) added in steps (1,000 -> 5,000)
   to one `hotelchat serve`, and as many bare clients to the bare server, alternating step by
   step: the server process's RSS growth per socket (bytes), and one broadcast reaching all of
   them (seconds from the emit until the last socket received it). The product's broadcast is
   emitted as a worker emits, through the Socket.IO Redis channel (write-only manager) to the
   whole `/guest` namespace; the bare one by a client's `fanout` event (in-memory manager).
2. 1,000 agents of one hotel connecting at once (session cookie, `/agent`, 50 connects in
   flight), vs as many bare clients: connects/s, failures, and per agent the `presence` frames
   (and agents listed in them) received until 1 s after the last connect; then one broadcast to
   the hotel's room (`hotel:<id>`) reaching all of them.

The load generator (one python-socketio client per socket, in this process) raises its soft limit
of open files to the hard limit; the servers do the same (the product inherits this process's).

Run:  .venv/bin/python -m loadtest s7 [--quick] [--sockets 1000,2500,5000] [--agents 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import psutil

from hotelchat.adapters.realtime import create_emitter
from hotelchat.domain.conversation import AGENT_NAMESPACE, GUEST_NAMESPACE, hotel_room
from loadtest import harness, socket_clients
from loadtest.harness import Proc, fmt, log
from loadtest.socket_clients import Tab, connect_all, connect_tab

NAME = "s7_idle_sockets"
BROADCAST_WAIT = 15.0  # seconds a broadcast may take to reach everyone before it counts as lost
SETTLE = 2.0  # seconds after connecting before memory is read
BROADCASTS = 3  # broadcasts per step (the median is reported)


def per_socket(rss_before: int, rss_after: int, sockets: int) -> float:
    """RSS growth per socket (bytes); NaN without sockets."""
    return (rss_after - rss_before) / sockets if sockets else float("nan")


def combine(broadcasts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several broadcasts to the same sockets as one: the median of their `last_s` and
    `median_s`, every `last_s`, and the most sockets any of them missed."""

    def middle(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    return {
        "sockets": broadcasts[0]["sockets"] if broadcasts else 0,
        "broadcasts": len(broadcasts),
        "last_s": middle([b["last_s"] for b in broadcasts]),
        "median_s": middle([b["median_s"] for b in broadcasts]),
        "last_s_each": [b["last_s"] for b in broadcasts],
        "missed": max((b["missed"] for b in broadcasts), default=0),
    }


async def reach(tabs: list[Tab], seq: int, emit: Any) -> dict[str, Any]:
    """Emit broadcast `seq` with `emit()` and wait (at most `BROADCAST_WAIT` seconds) until every
    tab has it: seconds until the last and the median one received it, and how many missed."""
    started = time.monotonic()
    await emit()
    deadline = started + BROADCAST_WAIT
    while time.monotonic() < deadline and any(seq not in t.arrivals for t in tabs):  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # a poll: 10 ms is finer than the broadcasts measured
    got = sorted(t.arrivals[seq] - started for t in tabs if seq in t.arrivals)
    return {
        "sockets": len(tabs),
        "reached": len(got),
        "missed": len(tabs) - len(got),
        "last_s": got[-1] if got else float("nan"),
        "median_s": got[len(got) // 2] if got else float("nan"),
    }


async def idle(
    stack: harness.Stack, web: Proc, bare: Proc, bare_base: str, levels: list[int]
) -> list[dict[str, Any]]:
    emitter = create_emitter(stack.redis.url)
    guests = await socket_clients.guest_sessions(stack.web_url, max(levels))
    log(f"{len(guests)} guest sessions ready")
    product: list[Tab] = []
    plain: list[Tab] = []
    await asyncio.sleep(SETTLE)
    rss0 = {"product": web.rss_bytes(), "bare": bare.rss_bytes()}
    me = psutil.Process()
    steps: list[dict[str, Any]] = []
    seq = 0
    try:
        for level in levels:
            for kind, tabs, proc in (("product", product, web), ("bare", plain, bare)):
                if kind == "product":
                    opens = [partial(connect_tab, stack.web_url, GUEST_NAMESPACE,
                                     token=g.token, address=g.address)
                             for g in guests[len(tabs) : level]]  # fmt: skip
                else:
                    opens = [partial(connect_tab, bare_base, GUEST_NAMESPACE)
                             for _ in range(level - len(tabs))]  # fmt: skip
                new, failures, took = await connect_all(opens, label=f"{kind} {level}")
                tabs.extend(new)
                await asyncio.sleep(SETTLE)
                rss = proc.rss_bytes()
                each = []
                for _ in range(BROADCASTS):
                    seq += 1
                    emit: Callable[[], Awaitable[None]] = (
                        partial(emitter.emit, "probe", {"seq": seq}, namespace=GUEST_NAMESPACE)
                        if kind == "product"
                        else partial(tabs[0].client.emit, "fanout", {"seq": seq},
                                     namespace=GUEST_NAMESPACE)
                    )  # fmt: skip
                    each.append(await reach(tabs, seq, emit))
                    await asyncio.sleep(0.5)
                broadcast = combine(each)
                step: dict[str, Any] = {
                    "target": kind, "sockets": len(tabs), "connect_failures": dict(failures),
                    "connect_seconds": took, "connects_per_second": len(new) / took if took else 0,
                    "rss_bytes": rss, "rss_idle_bytes": rss0[kind],
                    "bytes_per_socket": per_socket(rss0[kind], rss, len(tabs)),
                    "broadcast": broadcast,
                    "generator_rss_bytes": int(me.memory_info().rss),
                }  # fmt: skip
                steps.append(step)
                log(f"{kind} {len(tabs)} sockets: {step['bytes_per_socket'] / 1024:.1f} KB each, "
                    f"broadcast last {fmt(broadcast['last_s'], 3)} s, {broadcast['missed']} "
                    f"missed, failures {dict(failures)}")  # fmt: skip
    finally:
        await socket_clients.close_all(product + plain)
        redis = getattr(emitter, "redis", None)
        if redis is not None:
            await redis.aclose()
    return steps


async def agents_connecting(
    stack: harness.Stack, bare_base: str, count: int
) -> dict[str, dict[str, Any]]:
    emitter = create_emitter(stack.redis.url)
    agents = await socket_clients.open_agents(stack, count)
    hotel = await socket_clients.hotel_id(stack)
    log(f"{count} agents with sessions ready")
    results: dict[str, dict[str, Any]] = {}
    for kind in ("bare", "product"):
        if kind == "product":
            opens = [partial(connect_tab, stack.web_url, AGENT_NAMESPACE, cookie=a.token)
                     for a in agents]  # fmt: skip
        else:
            opens = [partial(connect_tab, bare_base, AGENT_NAMESPACE) for _ in agents]
        tabs, failures, took = await connect_all(opens, concurrency=50, label=f"{kind} agents")
        await asyncio.sleep(1.0)  # a presence window (0.5 s) and some
        frames = sorted(t.received["presence"] for t in tabs)
        listed = sorted(t.presence_agents for t in tabs)
        emit: Callable[[], Awaitable[None]] = (
            partial(emitter.emit, "probe", {"seq": 1}, namespace=AGENT_NAMESPACE,
                    room=hotel_room(hotel))
            if kind == "product" or not tabs
            else partial(tabs[0].client.emit, "fanout", {"seq": 1}, namespace=AGENT_NAMESPACE)
        )  # fmt: skip

        broadcast = await reach(tabs, 1, emit) if tabs else {}
        results[kind] = {
            "agents": count, "connected": len(tabs), "failures": dict(failures),
            "seconds": took, "connects_per_second": len(tabs) / took if took else 0.0,
            "presence_frames_per_agent": {
                "total": sum(frames), "median": frames[len(frames) // 2] if frames else 0,
                "max": frames[-1] if frames else 0,
            },
            "presence_agents_listed_total": sum(listed),
            "presence_list_frames": sum(t.received["presence_list"] for t in tabs),
            "hotel_room_broadcast": broadcast,
        }  # fmt: skip
        rate = results[kind]["connects_per_second"]
        last = fmt(broadcast.get("last_s", float("nan")), 3)
        log(f"{kind}: {len(tabs)}/{count} agents connected in {took:.1f} s ({rate:.0f}/s), "
            f"failures {dict(failures)}, presence frames {sum(frames)} (median "
            f"{frames[len(frames) // 2] if frames else 0}/agent), "
            f"broadcast last {last} s")  # fmt: skip
        await socket_clients.close_all(tabs)
        await asyncio.sleep(2.0)
    redis = getattr(emitter, "redis", None)
    if redis is not None:
        await redis.aclose()
    return results


def tables(steps: list[dict[str, Any]], agents: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| sockets | server | KB per socket (RSS growth) | RSS MB | broadcast to all: last s "
        "(median of 3) | each | median socket s | missed | connect failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        b = s["broadcast"]
        label = "hotelchat serve (guests)" if s["target"] == "product" else "bare python-socketio"
        lines.append(
            f"| {s['sockets']} | {label} | {s['bytes_per_socket'] / 1024:.1f} | "
            f"{s['rss_bytes'] / 2**20:.0f} | {fmt(b['last_s'], 3)} | "
            f"{', '.join(fmt(x, 2) for x in b.get('last_s_each', []))} | {fmt(b['median_s'], 3)} | "
            f"{b['missed']} | {sum(s['connect_failures'].values())} |"
        )
    lines += [
        "",
        "| agents of one hotel connecting | connected | failures | seconds | connects/s "
        "| presence frames (total / median per agent) | agents listed in them | hotel-room "
        "broadcast: last s | missed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in agents.items():
        b = r["hotel_room_broadcast"]
        p = r["presence_frames_per_agent"]
        lines.append(
            f"| {kind} | {r['connected']} / {r['agents']} | {sum(r['failures'].values())} | "
            f"{r['seconds']:.1f} | {r['connects_per_second']:.0f} | {p['total']} / {p['median']} "
            f"| {r['presence_agents_listed_total']} | {fmt(b.get('last_s', float('nan')), 3)} | "
            f"{b.get('missed', 'n/a')} |"
        )
    return "\n".join(lines)


def plot(path: Any, steps: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, cast) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, label in (("product", "hotelchat serve"), ("bare", "bare python-socketio")):
        mine = [s for s in steps if s["target"] == kind]
        xs = [s["sockets"] for s in mine]
        mem.plot(xs, [s["bytes_per_socket"] / 1024 for s in mine], marker="o", label=label)
        cast.plot(xs, [s["broadcast"]["last_s"] for s in mine], marker="o", label=label)
    mem.set(xlabel="idle sockets", ylabel="KB per socket (RSS growth)", title="memory")
    cast.set(xlabel="idle sockets", ylabel="seconds until the last received",
             title="one broadcast to all")  # fmt: skip
    for ax in (mem, cast):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("S7: idle sockets on one web process vs bare python-socketio")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(quick: bool, levels: list[int], agent_count: int, *,
        docs: Any = harness.DOCS) -> dict[str, Any]:  # fmt: skip
    limit = socket_clients.raise_open_files()
    needed = 2 * max(levels) + 200
    if limit < needed:
        raise SystemExit(f"open files limit {limit} < {needed} needed (ulimit -Hn)")
    start = harness.machine()
    stack = harness.Stack()
    try:
        web = stack.serve(TRUSTED_PROXY_HOPS="1")
        bare, bare_base = socket_clients.start_bare(stack)
        steps = asyncio.run(idle(stack, web, bare, bare_base, levels))
        agents = asyncio.run(agents_connecting(stack, bare_base, agent_count))
    finally:
        stack.close()
    data = {
        "scenario": NAME, "quick": quick, "levels": levels, "open_files_limit": limit,
        "machine": start, "machine_end": harness.machine(), "idle": steps, "agents": agents,
    }  # fmt: skip
    plot(docs / "benchmarks" / f"{NAME}.png", steps)
    body = (
        ("**Quick run (smoke test: few sockets); not a measurement.**\n\n" if quick else "")
        + "One `hotelchat serve` (TRUSTED_PROXY_HOPS=1) and the bare python-socketio server "
        "side by side; one python-socketio client (websocket) per socket in the load "
        "generator. Idle guests: web-chat sessions from addresses of their own, `/guest` with "
        "the token; memory is the server process's RSS growth since before the first socket, "
        f"read {SETTLE:g} s after each step's connects; {BROADCASTS} broadcasts per step, "
        "the median reported. The product's broadcast goes through "
        "the Socket.IO Redis channel as a worker's emit does (to the whole `/guest` namespace; "
        "for agents to `hotel:<id>`); the bare one is a client's `fanout` (in-memory manager). "
        "Agents: sessions opened in the database as login does, 50 connects in flight; "
        "presence frames counted until 1 s after the last connect.\n\n"
        + tables(steps, agents) + f"\n\n![S7](benchmarks/{NAME}.png)\n"
    )  # fmt: skip
    command = ".venv/bin/python -m loadtest s7" + (" --quick" if quick else "")
    harness.write_report(NAME, "S7: idle sockets per web process", command, body, data,
                         docs=docs)  # fmt: skip
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred sockets")
    parser.add_argument("--sockets", default=None, help="comma-separated socket counts")
    parser.add_argument("--agents", type=int, default=None, help="agents connecting at once")
    args = parser.parse_args(argv)
    levels = ([int(c) for c in args.sockets.split(",")] if args.sockets
              else [100, 300] if args.quick else [1000, 2500, 5000])  # fmt: skip
    agent_count = args.agents or (100 if args.quick else 1000)
    run(args.quick, levels, agent_count)


if __name__ == "__main__":
    main()
