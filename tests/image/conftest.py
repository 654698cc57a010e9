"""The container image, built once per session by scripts/image (so only when image tests are
selected), and processes started from it (tests/image/runner.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.image.runner import (
    IMAGE,
    REPO,
    Buildah,
    ImageConfig,
    ImageProcess,
    Volume,
    image_config,
    new_container,
    remove_stale_containers,
    start,
)

# A build on a cold cache (debootstrap, the wheelhouse, every layer) takes about five minutes on
# two cores; a warm one a second. Image tests allow for the build in their own timeout, since
# pytest-timeout counts the setup of the first test that asks for the image.
BUILD_TIMEOUT = 900.0
PROBE = Volume(Path(__file__).with_name("probe.py"), "/probe/probe.py")
PROBE_TIMEOUT = 120.0


class StartInImage(Protocol):
    """`runner.start` with the session's image and the test's log folder."""

    def __call__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        user: str | None = None,
        volumes: Sequence[Volume] = (),
        read_only_root: bool = True,
        network: bool = True,
        container: str | None = None,
    ) -> ImageProcess: ...


def image_timeout(seconds: float) -> pytest.MarkDecorator:
    """The timeout mark of an image test whose own work takes at most `seconds`."""
    return pytest.mark.timeout(BUILD_TIMEOUT + seconds)


@pytest.fixture(scope="session")
def image() -> str:
    """localhost/hotelchat:dev, built (or found up to date) by scripts/image."""
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "image")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/image took more than {BUILD_TIMEOUT:.0f} s: {exc.stdout!r}")
    print(done.stdout)
    if done.returncode != 0:
        pytest.fail(f"scripts/image failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return IMAGE


@pytest.fixture(scope="session")
def buildah(image: str) -> Buildah:
    """scripts/image's storage, rid of containers that killed test sessions left."""
    found = Buildah.of_repo()
    remove_stale_containers(found)
    return found


@pytest.fixture(scope="session")
def config(image: str, buildah: Buildah) -> ImageConfig:
    return image_config(buildah, image)


@pytest.fixture
def in_image(image: str, buildah: Buildah, tmp_path: Path) -> Iterator[StartInImage]:
    """Start processes from the image with `runner.start` (its log in the test's folder); every
    one is stopped and its container removed after the test, its output shown if it failed."""
    started: list[ImageProcess] = []

    def run(
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        user: str | None = None,
        volumes: Sequence[Volume] = (),
        read_only_root: bool = True,
        network: bool = True,
        container: str | None = None,
    ) -> ImageProcess:
        process = start(
            buildah,
            argv,
            env,
            name=name,
            log_dir=tmp_path,
            image=image,
            user=user,
            volumes=volumes,
            read_only_root=read_only_root,
            network=network,
            container=container,
        )
        started.append(process)
        return process

    yield run
    for process in started:
        try:
            process.stop()
        except (subprocess.SubprocessError, OSError) as exc:  # the others are stopped all the same
            print(f"--- {process.name} did not stop: {exc!r}")
    for process in started:
        print(f"--- {process.name} ({process.log}) ---\n{process.output()[-4000:]}")


@pytest.fixture(scope="session")
def shared_container(image: str, buildah: Buildah) -> Iterator[str]:
    """One container for the one-shot checks of the image (each run gets a fresh /tmp and the
    image's user can write nothing else, so none sees what another did): with vfs a container
    costs seconds to make and to remove."""
    container = new_container(buildah, image, "checks")
    yield container
    buildah("rm", container)


def probe(
    in_image: StartInImage,
    config: ImageConfig,
    container: str,
    what: str,
    *,
    read_only_root: bool = True,
    network: bool = False,
) -> Any:
    """Run tests/image/probe.py `what` in `container`, as the image's user, and return the JSON
    it prints; fails the test if it exits non-zero. No network unless `network`."""
    process = in_image(
        f"probe-{what}",
        config.argv(command=["python3", PROBE.container, what]),
        {},
        volumes=[PROBE],
        read_only_root=read_only_root,
        network=network,
        container=container,
    )
    status = process.wait(PROBE_TIMEOUT)
    assert status == 0, process.output()
    return json.loads(process.output().strip().splitlines()[-1])
