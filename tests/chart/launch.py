"""Starting a rendered container as a real process, through a pluggable launcher.

A launcher takes a name, an argv (the image's ENTRYPOINT and the container's args) and an
environment, and returns the running process. `HostLauncher` runs `.venv/bin/hotelchat …` on this
machine; a launcher that runs the same argv and environment inside the built image
(tests/image/runner.py) can take its place without changing the tests.

On the host, only what a pod's own network namespace and volumes make different is changed
(`host_overrides`): the addresses a pod binds (0.0.0.0, fixed ports, which on a shared host must be
loopback and free ones) and the paths of its emptyDir volumes (/tmp, /tmp/prometheus).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hotelchat.adapters.embedded import free_port
from tests.chart.workloads import ENTRYPOINT, ContainerProcess
from tests.e2e.processes import Process


class Running(Protocol):
    """A started process."""

    name: str

    def exited(self, timeout: float) -> int | None:
        """Its exit status, waiting up to `timeout` seconds; None if it still runs."""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if needed; its exit status."""

    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""


class Launcher(Protocol):
    def __call__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Running:
        """Start `argv` with exactly the environment `env`."""


class HostProcess(Process):
    """A process of this machine (tests/e2e/processes.Process) that can also be waited on."""

    def exited(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@dataclass
class HostLauncher:
    """Runs the image's commands from this checkout's virtualenv, logging to `log_dir`."""

    log_dir: Path

    def __call__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> HostProcess:
        executable = Path(sys.executable).parent / "hotelchat"
        if tuple(argv[: len(ENTRYPOINT)]) != ENTRYPOINT:
            raise ValueError(f"not a command of the image: {argv}")
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(executable), *argv[len(ENTRYPOINT) :]],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return HostProcess(name, popen, log)


# Variables that name an address or port a pod binds, and what each becomes on a shared host.
_BIND_HOSTS = ("HOST", "WORKER_METRICS_HOST", "OPERATOR_HOST")
_BIND_PORTS = ("PORT", "WORKER_METRICS_PORT", "OPERATOR_HEALTH_PORT", "OPERATOR_METRICS_PORT")


@dataclass(frozen=True)
class HostRun:
    """A container's environment adapted to the host, and where its ports went."""

    env: dict[str, str]
    ports: dict[str, int]


def host_overrides(process: ContainerProcess, scratch: Path) -> HostRun:
    """`process.env` for a run on this machine: loopback instead of 0.0.0.0, free ports instead
    of the container ports, `scratch` folders instead of the pod's emptyDir volumes. Nothing
    else changes."""
    env = dict(process.env)
    ports: dict[str, int] = {}
    for name in _BIND_HOSTS:
        if name in env:
            env[name] = "127.0.0.1"
    for name in _BIND_PORTS:
        if name in env and env[name] != "0":
            ports[name] = free_port()
            env[name] = str(ports[name])
    tmp = scratch / f"{process.component}-{process.container}-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if env.get("HOME") == "/tmp":
        env["HOME"] = str(tmp)
    if env.get("PROMETHEUS_MULTIPROC_DIR", "").startswith("/tmp/"):
        metrics = tmp / Path(env["PROMETHEUS_MULTIPROC_DIR"]).relative_to("/tmp")
        metrics.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return HostRun(env, ports)
