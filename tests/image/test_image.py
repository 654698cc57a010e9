"""What the image promises, checked in the image: its command, its user and what that user can
write, the runtime pins and nothing else (no compiler, no pip, no development tools), bytecode
compiled at build time, and the three bundled models working with no network and nothing
writable but /tmp."""

from __future__ import annotations

import importlib.metadata
import re

import pytest
from packaging.requirements import Requirement

from tests.image.conftest import StartInImage, image_timeout, probe
from tests.image.runner import IMAGE_UID, REPO, ImageConfig

pytestmark = [pytest.mark.slow, image_timeout(120)]


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """constraints.txt, by canonical name."""
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version:
            found[canonical(name)] = version.strip()
    return found


async def test_hotelchat_is_the_entrypoint_and_answers_version(
    in_image: StartInImage, config: ImageConfig, shared_container: str
) -> None:
    assert config.entrypoint == ("/opt/hotelchat/bin/hotelchat",)
    assert config.cmd == ("--help",)
    argv = config.argv(args=["--version"])
    process = in_image("version", argv, {}, container=shared_container)
    assert process.wait(60) == 0, process.output()
    version = importlib.metadata.version("hotelchat")
    assert f"hotelchat, version {version}" in process.output()
    assert config.labels["org.opencontainers.image.version"] == version
    assert re.fullmatch(
        r"[0-9a-f]{40}(-dirty)?", config.labels["org.opencontainers.image.revision"]
    )


async def test_it_runs_as_10001_and_can_write_to_tmp_alone(
    in_image: StartInImage, config: ImageConfig, shared_container: str
) -> None:
    assert config.user == f"{IMAGE_UID}:{IMAGE_UID}"
    assert (config.env["HOME"], config.env["TMPDIR"]) == ("/tmp", "/tmp")
    found = probe(in_image, config, shared_container, "identity")
    assert (found["uid"], found["gid"], found["home"]) == (IMAGE_UID, IMAGE_UID, "/tmp")
    assert found["writable"] == ["/tmp"]
    # By permissions alone, before a read-only root enforces it: the user owns nothing, and
    # nothing is open to everyone but /tmp (a read-only root makes it an empty tmpfs).
    plain = probe(in_image, config, shared_container, "identity", read_only_root=False)
    assert plain["owned"] == []
    assert plain["world_writable"] == ["/tmp"]
    assert plain["writable"] == ["/tmp"]


async def test_it_holds_the_runtime_pins_and_no_build_or_dev_tools(
    in_image: StartInImage, config: ImageConfig, shared_container: str
) -> None:
    found = probe(in_image, config, shared_container, "packages")
    assert found["python"][:2] == [3, 11]
    assert found["compilers"] == {}
    assert found["dev_modules"] == []
    installed = {canonical(name): version for name, version in found["installed"].items()}
    assert installed.pop("hotelchat") == importlib.metadata.version("hotelchat")
    assert "pip" not in installed
    assert "setuptools" not in installed
    pinned = pins()
    assert {name: pinned.get(name) for name in installed} == installed
    # And the whole runtime set: every dependency of pyproject.toml outside the extras.
    required = [Requirement(r) for r in importlib.metadata.requires("hotelchat") or []]
    runtime = {canonical(r.name) for r in required if "extra" not in str(r.marker)}
    assert runtime <= set(installed)
    assert found["uncompiled"] == []


async def test_the_bundled_models_load_with_no_network_and_a_read_only_root(
    in_image: StartInImage, config: ImageConfig, shared_container: str
) -> None:
    found = probe(in_image, config, shared_container, "models")
    assert found["languages"] == ["es", "de", "en"]
    assert found["tokens"] == 7
    assert found["query_dimensions"] == 384
    assert found["query_norm"] == pytest.approx(1.0, abs=1e-3)
    parking, breakfast = found["similarities"]
    assert parking > breakfast  # a Spanish question finds the English passage
    assert found["tmp"] == []  # no model was downloaded or unpacked
