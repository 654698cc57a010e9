"""`python -m loadtest <scenario|all> [--quick]`: run one benchmark scenario, or all of them in
turn; each writes docs/benchmarks/<name>.json, its plot, and its section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time

from loadtest.harness import log

SCENARIOS = {
    "s1": "loadtest.s1_socketio",
    "s2": "loadtest.s2_fanout",
    "s3": "loadtest.s3_webhook",
    "s6": "loadtest.s6_end_to_end",
    "s4": "loadtest.s4_job_pickup",
    "s5": "loadtest.s5_stream_relay",
    "s7": "loadtest.s7_idle_sockets",
    "tiers": "loadtest.tiers",
    "faults": "loadtest.faults",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--quick", action="store_true", help="a smoke run of each (< 60 s)")
    args, rest = parser.parse_known_args()
    # SIGTERM unwinds like Ctrl-C, so every started process and embedded server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if rest and len(names) > 1:
        parser.error(f"options {rest} are for one scenario, not all")
    for name in names:
        started = time.monotonic()
        log(f"=== {name} ({SCENARIOS[name]}){' quick' if args.quick else ''} ===")
        module = importlib.import_module(SCENARIOS[name])
        module.main([*rest, *(["--quick"] if args.quick else [])])
        log(f"=== {name} done in {time.monotonic() - started:.0f} s ===")


if __name__ == "__main__":
    main()
