"""The chart's tests: renderings of charts/hotelchat and the k8s/ manifests, checked offline.
Only tests/chart/test_processes.py needs PostgreSQL and Redis (the session's `backing`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.chart.launch import ImageLauncher, Launcher, Running
from tests.image.conftest import buildah, config, image
from tests.image.runner import Buildah, ImageConfig

__all__ = ["buildah", "config", "image"]  # the image's fixtures, for the process test


@pytest.fixture
def launcher(
    image: str, buildah: Buildah, config: ImageConfig, tmp_path: Path
) -> Iterator[Launcher]:
    """Starts a rendered container's argv and environment from the built image (built first by
    scripts/image). Every process is stopped after the test, and its output shown."""
    host = ImageLauncher(buildah, config, tmp_path, image)
    started: list[Running] = []

    def launch(name: str, argv: Sequence[str], env: Mapping[str, str]) -> Running:
        process = host(name, argv, env)
        started.append(process)
        return process

    yield launch
    for process in started:
        process.stop()
    for process in started:
        print(f"--- {process.name} ---\n{process.output()[-4000:]}")
