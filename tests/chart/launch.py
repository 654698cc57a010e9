"""Starting a rendered container as a real process, through a pluggable launcher.

A launcher takes a name, an argv (the image's ENTRYPOINT and the container's args) and an
environment, and returns the running process. `HostLauncher` runs `.venv/bin/hotelchat …` on this
machine; a launcher that runs the same argv and environment inside the built image
(tests/image/runner.py) can take its place without changing the tests.

Only what a pod's own network namespace and volumes make different is changed: the addresses a
pod binds (0.0.0.0 and fixed ports, which on a shared host must be loopback and free ones) by
`bind_overrides`, for any launcher that shares the host's network; and, by `HostLauncher` alone,
the pod's emptyDir paths (/tmp, /tmp/prometheus), which on the host become scratch folders.
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
    """Runs the image's commands from this checkout's virtualenv; logs and the stand-ins for the
    pod's /tmp go to `scratch`."""

    scratch: Path

    def __call__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> HostProcess:
        executable = Path(sys.executable).parent / "hotelchat"
        if tuple(argv[: len(ENTRYPOINT)]) != ENTRYPOINT:
            raise ValueError(f"not a command of the image: {argv}")
        log = self.scratch / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(executable), *argv[len(ENTRYPOINT) :]],
                env=self.volumes(name, env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return HostProcess(name, popen, log)

    def volumes(self, name: str, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with the pod's /tmp (an emptyDir) moved to a folder of `scratch`."""
        moved = dict(env)
        tmp = self.scratch / f"{name}-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for variable in ("HOME", "PROMETHEUS_MULTIPROC_DIR"):
            path = Path(moved.get(variable, "/nowhere"))
            if path == Path("/tmp") or Path("/tmp") in path.parents:
                moved[variable] = str(tmp / path.relative_to("/tmp"))
                Path(moved[variable]).mkdir(parents=True, exist_ok=True)
        return moved


# Variables that name an address or port a pod binds, and what each becomes on a shared host.
_BIND_HOSTS = ("HOST", "WORKER_METRICS_HOST", "OPERATOR_HOST")
_BIND_PORTS = ("PORT", "WORKER_METRICS_PORT", "OPERATOR_HEALTH_PORT", "OPERATOR_METRICS_PORT")


@dataclass(frozen=True)
class HostRun:
    """A container's environment with the host's addresses, and where its ports went."""

    env: dict[str, str]
    ports: dict[str, int]


def bind_overrides(process: ContainerProcess) -> HostRun:
    """`process.env` with loopback instead of 0.0.0.0 and free ports instead of the container's
    fixed ones. Nothing else changes."""
    env = dict(process.env)
    ports: dict[str, int] = {}
    for name in _BIND_HOSTS:
        if name in env:
            env[name] = "127.0.0.1"
    for name in _BIND_PORTS:
        if name in env and env[name] != "0":
            ports[name] = free_port()
            env[name] = str(ports[name])
    return HostRun(env, ports)
