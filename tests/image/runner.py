"""Processes started from the container image as a pod starts them: the image's own user (10001)
and environment plus the given one, a read-only root filesystem with an empty tmpfs at /tmp (the
chart's emptyDir), the host's network. buildah runs them with chroot isolation (no daemon), on the
storage scripts/image builds into.

buildah run has no read-only-root option; the same effect comes from binding every top-level
directory of the container's filesystem read-only over itself (all but /tmp, /proc, /sys, /dev
and /run, which buildah mounts its own files into; /run is root's alone in the image).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from hotelchat.adapters.embedded import pid_alive

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/hotelchat:dev"  # what `scripts/image` builds by default
IMAGE_UID = 10001
WRITABLE = "/tmp"  # the one writable place, as the chart mounts it
CONTAINER_PREFIX = "hotelchat-test-"  # then the test process's pid: who may clean up after it
# Where buildah mounts its own files, or the kernel's: left as buildah sets them up.
NOT_BOUND = frozenset({"tmp", "proc", "sys", "dev", "run"})


class BuildahError(Exception):
    """A buildah command failed; the message carries its stderr."""


@dataclass(frozen=True)
class Buildah:
    """The buildah command line on one storage folder (scripts/image's: vfs driver, --root and
    --runroot under its cache folder)."""

    cache: Path

    @classmethod
    def of_repo(cls) -> Buildah:
        """The storage scripts/image uses: $HOTELCHAT_IMAGE_CACHE, else .cache/image/."""
        return cls(Path(os.environ.get("HOTELCHAT_IMAGE_CACHE") or REPO / ".cache" / "image"))

    def command(self, *args: str) -> list[str]:
        """The argv of `buildah ARGS` on this storage."""
        return [
            "buildah",
            "--root", str(self.cache / "storage"),
            "--runroot", str(self.cache / "run"),
            "--storage-driver", "vfs",
            *args,
        ]  # fmt: skip

    def __call__(self, *args: str, timeout: float = 120.0) -> str:
        """Run `buildah ARGS` and return its standard output, stripped. Raises `BuildahError`
        when it fails, `subprocess.TimeoutExpired` after `timeout` seconds."""
        done = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise BuildahError(f"buildah {' '.join(args[:2])}: {done.stderr.strip()}")
        return done.stdout.strip()


@dataclass(frozen=True)
class ImageConfig:
    """What the image says about how to run it (its OCI config)."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    user: str
    env: dict[str, str]
    labels: dict[str, str]

    def argv(
        self, command: Sequence[str] | None = None, args: Sequence[str] | None = None
    ) -> list[str]:
        """The process a Kubernetes container with `command` and `args` runs: `command` replaces
        the ENTRYPOINT (and drops CMD), `args` replaces CMD
        (https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/)."""
        if command is not None:
            return [*command, *(args or ())]
        return [*self.entrypoint, *(self.cmd if args is None else args)]


def image_config(buildah: Buildah, image: str = IMAGE) -> ImageConfig:
    """The OCI config of `image` in `buildah`'s storage. Raises `BuildahError` if it is absent."""
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    return ImageConfig(
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        user=config.get("User", ""),
        env=env,
        labels=dict(config.get("Labels") or {}),
    )


@dataclass(frozen=True)
class Volume:
    """A host path bind-mounted into the container (a file or a folder)."""

    host: Path
    container: str
    read_only: bool = True


@dataclass
class ImageProcess:
    """One process running from the image in its own buildah container."""

    name: str
    container: str
    popen: subprocess.Popen[bytes]
    log: Path
    buildah: Buildah
    owns_container: bool = True

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (as the kubelet sends it), wait up to `timeout` seconds, then SIGKILL; removes
        the container. Returns buildah's exit status: the command's own, 1 when a signal ended
        the command, -9 when it had to be killed."""
        try:
            if self.popen.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    return self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
            return self.popen.wait(timeout)
        finally:
            self.remove()

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node loss ends it; removes the container."""
        try:
            self._signal(signal.SIGKILL)
            self.popen.wait(20)
        finally:
            self.remove()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself (a one-shot command such as `migrate`); returns
        its exit status and removes the container. Raises `subprocess.TimeoutExpired` after
        `timeout` seconds (the process is then killed)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.popen.wait(20)
            raise
        finally:
            self.remove()

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def remove(self) -> None:
        """Remove the buildah container if it was made for this process (idempotent; the process
        must have exited)."""
        if self.owns_container:
            with contextlib.suppress(BuildahError):
                self.buildah("rm", self.container)

    def _signal(self, sig: signal.Signals) -> None:
        # buildah, its chroot helpers and the command share the process group started here.
        # SIGTERM goes to the command alone, as the kubelet signals a container's first process
        # (buildah's helper would answer it by killing the command); SIGKILL to them all.
        targets = [self.popen.pid] if sig == signal.SIGKILL else _container_roots(self.popen.pid)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)


def _container_roots(group: int) -> list[int]:
    """The processes of process group `group` that buildah's helpers started: the container's
    first processes."""
    processes: dict[int, tuple[str, int]] = {}  # pid: (command name, parent pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == group:
            processes[int(stat.parent.name)] = (name, int(fields[1]))
    # buildah re-executes itself from memory: its helpers are named "memfd:buildah-c…".
    return [
        pid
        for pid, (name, parent) in processes.items()
        if "buildah" not in name and "buildah" in processes.get(parent, ("", 0))[0]
    ]


def start(
    buildah: Buildah,
    argv: Sequence[str],
    env: dict[str, str],
    *,
    name: str,
    log_dir: Path,
    image: str = IMAGE,
    user: str | None = None,
    volumes: Sequence[Volume] = (),
    read_only_root: bool = True,
    network: bool = True,
    container: str | None = None,
) -> ImageProcess:
    """Start `argv` from `image` with `env` added to the image's environment, as the image's user
    (or `user`, "uid:gid", like a pod's runAsUser), with only /tmp writable when
    `read_only_root`, on the host's network or, without `network`, in a network namespace of
    its own with nothing but a loopback that is down. Its output goes to `log_dir/<name>.log`.
    It runs in a container of its own, or in `container` (from `new_container`; left in place:
    with a read-only root and a fresh /tmp a run leaves nothing there for the next one).
    Raises `BuildahError` when the container cannot be made."""
    owned = container is None
    container = container or new_container(buildah, image, name)
    try:
        rootfs = Path(buildah("mount", container))
        options = ["--isolation", "chroot"]
        options += ["--mount", f"type=tmpfs,destination={WRITABLE},tmpfs-mode=1777"]
        if read_only_root:
            for entry in sorted(rootfs.iterdir()):
                if entry.is_dir() and not entry.is_symlink() and entry.name not in NOT_BOUND:
                    options += ["--mount", f"type=bind,src={entry},dst=/{entry.name},ro"]
        for volume in volumes:
            suffix = ":ro" if volume.read_only else ""
            options += ["--volume", f"{volume.host}:{volume.container}{suffix}"]
        if user is not None:
            options += ["--user", user]
        for key, value in env.items():
            options += ["--env", f"{key}={value}"]
        log = log_dir / f"{name}.log"
        with log.open("wb") as out:
            isolate = [] if network else ["unshare", "--net"]
            popen = subprocess.Popen(
                [*isolate, *buildah.command("run", *options, container, "--", *argv)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except BaseException:
        if owned:
            with contextlib.suppress(BuildahError):
                buildah("rm", container)
        raise
    return ImageProcess(name, container, popen, log, buildah, owns_container=owned)


def new_container(buildah: Buildah, image: str, name: str) -> str:
    """A buildah working container of `image` (a full copy of it, with vfs: seconds), named for
    the test process (`remove_stale_containers`). Raises `BuildahError`."""
    return buildah(
        "from", "--pull=never", "--quiet",
        "--name", f"{CONTAINER_PREFIX}{os.getpid()}-{name}-{secrets.token_hex(3)}",
        image,
    )  # fmt: skip


def remove_stale_containers(buildah: Buildah) -> list[str]:
    """Remove the containers that test processes which have since died left behind (a killed
    pytest cannot clean up; with vfs each one is a full copy of the image). Returns their names."""
    removed = []
    for container in json.loads(buildah("containers", "--json") or "[]") or []:
        name = container.get("containername", "")
        pid = name.removeprefix(CONTAINER_PREFIX).split("-", 1)[0]
        if name.startswith(CONTAINER_PREFIX) and pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(BuildahError):
                buildah("rm", container["id"])
                removed.append(name)
    return removed


SOCKET_DIR = "/run/postgresql"  # where the image's processes find a unix-socket PostgreSQL


def postgres_for_image(dsn: str) -> tuple[str, list[Volume]]:
    """`dsn` as a process in the image reaches the same server, and what to mount for it. TCP
    URLs are unchanged (the container shares the host's network). A unix socket (pgserver's
    `postgresql://user@/db?host=/dir`) is bind-mounted as a file at /run/postgresql: its folder
    is PostgreSQL's data folder, which only the server's own user may enter."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = (query.get("host") or [parts.hostname or ""])[0]
    if not host.startswith("/"):
        return dsn, []
    port = (query.get("port") or [str(parts.port or 5432)])[0]
    socket = f".s.PGSQL.{port}"
    query["host"] = [SOCKET_DIR]
    moved = urlunsplit(parts._replace(query=urlencode(query, doseq=True, safe="/")))
    return moved, [Volume(Path(host) / socket, f"{SOCKET_DIR}/{socket}", read_only=False)]
