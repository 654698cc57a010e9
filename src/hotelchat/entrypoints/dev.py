"""`hotelchat dev`: the whole system on one machine, from nothing, with one command.

Without DATABASE_URL / REDIS_URL it starts embedded PostgreSQL and Redis with their data under the
state folder (HOTELCHAT_STATE_DIR, default `.hotelchat/`), so the demo survives a restart. It
migrates, seeds the demo chain, then runs the web server, a worker and a Twilio API emulator as
child processes, each in its own session so that Ctrl-C reaches only this supervisor, which stops
them in order. `hotelchat simulate` finds the running system through `dev.json` in the state
folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click

from hotelchat.adapters.credentials import TokenCipher, generate_key
from hotelchat.adapters.embedded import (
    EmbeddedError,
    EmbeddedPostgres,
    EmbeddedRedis,
    free_port,
    start_postgres,
    start_redis,
)
from hotelchat.adapters.postgres.migrate import migrate
from hotelchat.adapters.postgres.provisioning import open_provisioning
from hotelchat.config import Settings
from hotelchat.services.demo import HOTELS, AgentLogin, seed_demo

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
RUNTIME_FILE = "dev.json"


async def seed(
    admin_dsn: str, passwords: dict[str, str], cipher: TokenCipher | None
) -> list[AgentLogin]:
    """Seed the demo chain as the schema owner, its tokens encrypted with `cipher`; see
    `services.demo.seed_demo`."""
    async with open_provisioning(admin_dsn, cipher) as prov:
        return await seed_demo(prov, passwords)


def _read_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


@dataclass
class Supervisor:
    """The child processes of `hotelchat dev`, stopped in reverse order."""

    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    stopping: bool = False

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "hotelchat", *args]
        process = subprocess.Popen(command, env=env, start_new_session=True)
        self.children.append((name, process))

    def exited(self) -> str | None:
        for name, process in self.children:
            if process.poll() is not None:
                return name
        return None

    def stop(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for _name, process in reversed(self.children):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_ready(url: str, supervisor: Supervisor) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if supervisor.exited() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


@dataclass
class Backing:
    """PostgreSQL and Redis for the demo: embedded ones, or those the environment names."""

    admin_dsn: str
    app_dsn: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_backing(settings: Settings, state: Path) -> Backing:
    """Start what the environment does not provide. Raises `click.UsageError` when
    DATABASE_URL is given without DATABASE_ADMIN_URL."""
    backing = Backing(admin_dsn="", app_dsn="", redis_url="")
    if settings.database_url is None:
        click.echo(f"starting embedded PostgreSQL in {state / 'postgres'}")
        backing.postgres = start_postgres(state / "postgres")
        backing.admin_dsn, backing.app_dsn = backing.postgres.admin_dsn, backing.postgres.app_dsn
    else:
        if settings.database_admin_url is None:
            raise click.UsageError("DATABASE_URL is set but DATABASE_ADMIN_URL is not")
        backing.admin_dsn = settings.database_admin_url.get_secret_value()
        backing.app_dsn = settings.database_url.get_secret_value()
    if settings.redis_url is None:
        saved = _read_json(state / RUNTIME_FILE).get("redis_port", "")
        try:
            # The same port as last time, so a `hotelchat simulate` from before still works.
            backing.redis = start_redis(
                state / "redis", port=int(saved) if saved.isdigit() else free_port()
            )
        except EmbeddedError:
            backing.redis = start_redis(state / "redis", port=free_port())
        backing.redis_url = backing.redis.url
    else:
        backing.redis_url = settings.redis_url.get_secret_value()
    return backing


def _state_secret(state: Path, name: str, make: Callable[[], str]) -> str:
    """The secret kept in `state/name`, made with `make` the first time."""
    path = state / name
    if not path.exists():
        _write_private(path, make())
    return path.read_text().strip()


@dataclass(frozen=True)
class DevSecrets:
    secret_key: str
    encryption_keys: str


def prepare_data(
    settings: Settings, state: Path, backing: Backing
) -> tuple[list[AgentLogin], DevSecrets]:
    """Migrate, seed the demo, and return the agent logins and the secrets (SECRET_KEY and
    ENCRYPTION_KEYS from the environment, else made once and kept in the state folder)."""
    made = DevSecrets(
        secret_key=(
            settings.secret_key.get_secret_value()
            if settings.secret_key is not None
            else _state_secret(state, "secret_key", lambda: secrets.token_urlsafe(48))
        ),
        encryption_keys=(
            settings.encryption_keys.get_secret_value()
            if settings.encryption_keys is not None
            else _state_secret(state, "encryption_keys", generate_key)
        ),
    )
    cipher = TokenCipher.from_setting(made.encryption_keys)
    asyncio.run(migrate(backing.admin_dsn, backing.app_dsn, cipher=cipher))
    credentials = state / "demo-agents.json"
    logins = asyncio.run(seed(backing.admin_dsn, _read_json(credentials), cipher))
    _write_private(credentials, json.dumps({x.email: x.password for x in logins}, indent=2))
    return logins, made


def run_dev(settings: Settings, *, port: int | None) -> int:
    """Bring the demo up and supervise it until Ctrl-C or SIGTERM. Returns the exit status."""
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    web_port = port or settings.port
    public_url = (
        settings.public_url
        if "public_base_url" in settings.model_fields_set
        else f"http://127.0.0.1:{web_port}"
    )
    supervisor = Supervisor()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    backing = start_backing(settings, state)
    try:
        logins, made = prepare_data(settings, state, backing)
        env = dict(os.environ)
        env.update(
            DATABASE_URL=backing.app_dsn,
            DATABASE_ADMIN_URL=backing.admin_dsn,
            REDIS_URL=backing.redis_url,
            SECRET_KEY=made.secret_key,
            ENCRYPTION_KEYS=made.encryption_keys,
            PUBLIC_BASE_URL=public_url,
            PORT=str(web_port),
            LOG_FORMAT=env.get("LOG_FORMAT", "console"),
        )
        twilio_url = str(settings.twilio_api_base_url or "").rstrip("/")
        if not twilio_url:
            twilio_port = free_port()
            twilio_url = f"http://127.0.0.1:{twilio_port}"
            supervisor.start(
                "twilio-emulator",
                ["emulator", "twilio", "--port", str(twilio_port), "--demo-templates"],
                env,
            )
        env["TWILIO_API_BASE_URL"] = twilio_url
        supervisor.start("worker", ["worker"], env)
        supervisor.start("web", ["serve"], env)
        runtime = {
            "public_url": public_url,
            "database_url": backing.app_dsn,
            "redis_url": backing.redis_url,
            "twilio_api_base_url": twilio_url,
            "redis_port": str(backing.redis.port) if backing.redis else "",
        }
        _write_private(state / RUNTIME_FILE, json.dumps(runtime, indent=2))
        if not _wait_ready(f"http://127.0.0.1:{web_port}", supervisor):
            click.echo("error: the web server did not become ready; see the log above", err=True)
            return 1
        _banner(public_url, twilio_url, logins)
        while not supervisor.stopping:
            crashed = supervisor.exited()
            if crashed is not None:
                click.echo(f"error: {crashed} exited; stopping everything", err=True)
                return 1
            time.sleep(0.3)
        click.echo("stopping…")
        return 0
    finally:
        supervisor.stop()
        backing.stop()


def _banner(public_url: str, twilio_url: str, logins: list[AgentLogin]) -> None:
    lines = [
        "",
        "HotelChat is running.",
        f"  agent dashboard: {public_url}/dashboard",
        f"  guest web chat:  {public_url}/chat/{HOTELS[0].slug}",
        f"  health:          {public_url}/readyz",
        f"  WhatsApp in:     {public_url}/webhooks/twilio/whatsapp",
        f"  Twilio API:      {twilio_url}   (sent messages: {twilio_url}/_emulator/messages)",
        "",
        "Agent logins:",
        *(f"  {x.hotel_slug:16} {x.email} / {x.password}" for x in logins),
        "",
        "Play a guest in another terminal:",
        f'  hotelchat simulate --hotel {HOTELS[0].slug} --from +15551234567 "Is there parking?"',
        "",
        "Ctrl-C stops everything; the data stays for the next start.",
    ]
    click.echo("\n".join(lines))
