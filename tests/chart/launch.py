"""Starting a rendered container as a real process, through a pluggable launcher.

A launcher takes a name, an argv (the image's ENTRYPOINT and the container's args) and an
environment, and returns the running process. `ImageLauncher` runs them from the built image
(tests/image/runner.py), as the chart's pods would.

Only what a pod's own network namespace makes different is changed: the addresses a pod binds
(0.0.0.0 and fixed ports, which on the shared host network must be loopback and free ones), by
`bind_overrides`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hotelchat.adapters.embedded import free_port
from tests.chart.workloads import ENTRYPOINT, ContainerProcess
from tests.image.runner import (
    IMAGE,
    Buildah,
    ImageConfig,
    ImageProcess,
    Volume,
    postgres_for_image,
    start,
)


class Running(Protocol):
    """A started process."""

    @property
    def name(self) -> str: ...

    def exited(self, timeout: float) -> int | None:
        """Its exit status, waiting up to `timeout` seconds; None if it still runs."""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if needed; its exit status."""

    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""


class Launcher(Protocol):
    def __call__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Running:
        """Start `argv` with exactly the environment `env`."""


@dataclass
class ImageRunning:
    """A process started from the image, as the chart's tests wait on it."""

    process: ImageProcess

    @property
    def name(self) -> str:
        return self.process.name

    def exited(self, timeout: float) -> int | None:
        try:
            status = self.process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.process.remove()
        return status

    def stop(self, timeout: float = 20.0) -> int:
        return self.process.stop(timeout)

    def output(self) -> str:
        return self.process.output()


KUBECONFIG_IN_IMAGE = "/kube/config"


@dataclass
class ImageLauncher:
    """Runs a rendered container's argv and environment from the built image, as its pod would
    (tests/image/runner.py: the image's user, read-only root, an empty /tmp, the host's
    network). What differs from a pod is only how the test's servers are reached: a
    unix-socket PostgreSQL URL is pointed at the socket mounted into the container, and a
    KUBECONFIG file (the operator's stand-in for its ServiceAccount) is mounted read-only."""

    buildah: Buildah
    config: ImageConfig
    logs: Path
    image: str = IMAGE

    def __call__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> ImageRunning:
        if tuple(argv[: len(ENTRYPOINT)]) != ENTRYPOINT:
            raise ValueError(f"not a command of the image: {argv}")
        moved, volumes = dict(env), []
        for key, value in env.items():
            if value.startswith(("postgres://", "postgresql://")):
                moved[key], extra = postgres_for_image(value)
                volumes += [volume for volume in extra if volume not in volumes]
        if "KUBECONFIG" in env:
            volumes.append(Volume(Path(env["KUBECONFIG"]), KUBECONFIG_IN_IMAGE))
            moved["KUBECONFIG"] = KUBECONFIG_IN_IMAGE
        process = start(
            self.buildah,
            self.config.argv(args=list(argv[len(ENTRYPOINT) :])),
            moved,
            name=name,
            log_dir=self.logs,
            image=self.image,
            volumes=volumes,
        )
        return ImageRunning(process)


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
