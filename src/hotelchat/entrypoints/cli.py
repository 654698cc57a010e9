"""The `hotelchat` command: run the pieces, migrate, provision tenants, play the guest.

Settings come from the environment (see the README's table). A missing or malformed variable is
reported by name and the command exits with status 2 before doing anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.postgres.database import SchemaError
from hotelchat.adapters.postgres.provisioning import Provisioning, open_provisioning
from hotelchat.config import ConfigError, Settings
from hotelchat.domain.errors import HotelChatError
from hotelchat.domain.tenants import SenderSpec
from hotelchat.logs import configure_logging
from hotelchat.services.ports import Deps

T = TypeVar("T")


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            click.echo(f"error: {name}: {error['msg']}", err=True)
        raise SystemExit(2) from None


def run(work: Awaitable[T]) -> T:
    """Run `work` to completion; known failures print one line and exit 1 (config: 2)."""
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except SchemaError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except HotelChatError as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(1) from None


def admin_dsn(settings: Settings) -> str:
    if settings.database_admin_url is None:
        raise click.UsageError("DATABASE_ADMIN_URL (the schema owner's URL) is not set")
    return settings.database_admin_url.get_secret_value()


def provisioning_dsn(settings: Settings) -> str:
    """Where provisioning commands connect: the operator's role when DATABASE_OPERATOR_URL is
    set (it reads no guest data), else the schema owner."""
    if settings.database_operator_url is not None:
        return settings.database_operator_url.get_secret_value()
    if settings.database_admin_url is None:
        raise click.UsageError("set DATABASE_OPERATOR_URL (or DATABASE_ADMIN_URL)")
    return settings.database_admin_url.get_secret_value()


def cipher(settings: Settings, *, required: bool = False) -> TokenCipher | None:
    """The Twilio-token cipher from ENCRYPTION_KEYS; exits 2 when malformed, or missing and
    `required`."""
    from hotelchat.bootstrap import require_token_cipher, token_cipher

    try:
        return require_token_cipher(settings) if required else token_cipher(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


@click.group()
@click.version_option(package_name="hotelchat")
def main() -> None:
    """HotelChat: guest messaging for hotel chains."""


@main.command()
@click.option("--port", type=int, default=None, help="Web port (default: PORT or 8000).")
def dev(port: int | None) -> None:
    """Run everything locally: embedded PostgreSQL and Redis (when DATABASE_URL / REDIS_URL are
    unset), migrations, the demo chain, the web server, a worker and a Twilio API emulator."""
    from hotelchat.entrypoints.dev import run_dev

    settings = load_settings()
    configure_logging(settings.log_level, "console")
    raise SystemExit(run_dev(settings, port=port))


@main.command()
def serve() -> None:
    """Serve the web app (webhooks, dashboard, web chat) with Hypercorn."""
    from hypercorn.config import Config
    from hypercorn.run import run as run_hypercorn

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    cipher(settings, required=True)
    if settings.web_workers > 1:
        prepare_multiprocess_metrics()
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.application_path = "hotelchat.entrypoints.web.asgi:app"
    # One worker runs in this process; more are spawned, sharing the socket.
    config.workers = 0 if settings.web_workers == 1 else settings.web_workers
    config.graceful_timeout = 15
    config.keep_alive_timeout = 75  # longer than typical load balancer idle timeouts (60 s)
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our JSON handler
    raise SystemExit(run_hypercorn(config))


def prepare_multiprocess_metrics() -> None:
    """Several Hypercorn workers share one metrics directory (PROMETHEUS_MULTIPROC_DIR, one per
    pod; a temporary one if unset), emptied at start so a restart begins from zero. Must run
    before any worker imports prometheus_client."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="hotelchat-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink()


@main.command()
def worker() -> None:
    """Run an arq worker: model calls, Twilio sends, the stalled-work sweeper."""
    from hotelchat.entrypoints.worker import run_worker

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    cipher(settings, required=True)
    run(run_worker(settings))


@main.command()
def operator() -> None:
    """Run the Kubernetes operator: one `Hotel` resource (hotelchat.io/v1alpha1) per tenant,
    reconciled into the database (as DATABASE_OPERATOR_URL), cluster-wide, in-cluster or
    through KUBECONFIG."""
    from hotelchat.entrypoints.operator import run_operator

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    cipher(settings, required=True)
    if settings.database_operator_url is None:
        click.echo("error: DATABASE_OPERATOR_URL is not set", err=True)
        raise SystemExit(2)
    run(run_operator(settings))


@main.command()
def migrate() -> None:
    """Apply database migrations as DATABASE_ADMIN_URL, let DATABASE_URL's and
    DATABASE_OPERATOR_URL's roles in, and (with ENCRYPTION_KEYS) encrypt Twilio auth tokens
    still in plain text or under an older key."""
    from hotelchat.adapters.postgres.migrate import migrate as do_migrate

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    app = settings.database_url.get_secret_value() if settings.database_url else None
    operator_url = settings.database_operator_url
    operator = operator_url.get_secret_value() if operator_url else None
    revision = run(do_migrate(admin_dsn(settings), app, operator, cipher(settings)))
    click.echo(f"database at revision {revision}")


@main.command("wait-for-schema")
@click.option(
    "--timeout",
    type=click.FloatRange(1, 86_400),
    default=600.0,
    show_default=True,
    help="Seconds to wait before giving up (exit 1).",
)
def wait_for_schema(timeout: float) -> None:
    """Wait until the database (as DATABASE_URL) is at this code's migration: the init container
    of every pod, so none starts before `hotelchat migrate` has run."""
    from hotelchat.adapters.postgres.migrate import wait_for_schema as wait

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    try:
        dsn = settings.require_database_url()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    revision = run(wait(dsn, timeout=timeout))
    click.echo(f"database at revision {revision}")


@main.group()
def keys() -> None:
    """Keys for ENCRYPTION_KEYS (they encrypt Twilio auth tokens at rest)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random Fernet key. To rotate, put it first in ENCRYPTION_KEYS (comma-
    separated), roll the pods, run `hotelchat migrate`, then drop the old key."""
    from hotelchat.adapters.credentials import generate_key

    click.echo(generate_key())


@main.command("seed-demo")
def seed_demo() -> None:
    """Create the demo chain (two hotels, knowledge base, numbers, agents) if missing."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    from hotelchat.entrypoints.dev import seed

    for login in run(seed(admin_dsn(settings), {}, cipher(settings, required=True))):
        click.echo(f"{login.hotel_slug}: {login.email} / {login.password}")


@main.command()
@click.option("--hotel", "hotel_slug", required=True, help="The hotel's slug, e.g. amapola-resort.")
@click.option(
    "--from",
    "from_number",
    default="+15551234567",
    show_default=True,
    help="The guest's number, E.164.",
)
@click.option("--name", default="Simulated Guest", show_default=True, help="WhatsApp profile name.")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the reply."
)
@click.argument("text")
def simulate(hotel_slug: str, from_number: str, name: str, timeout: float, text: str) -> None:
    """Play a guest: post TEXT to the running server as Twilio would (signed webhook), then print
    the reply the guest receives."""
    from hotelchat.entrypoints.simulate import simulate_guest

    settings = load_settings()
    configure_logging("WARNING", "console")
    reply = run(
        simulate_guest(
            settings,
            hotel_slug=hotel_slug,
            from_number=from_number,
            profile_name=name,
            text=text,
            timeout=timeout,
        )
    )
    click.echo(reply)


@main.group()
def hotels() -> None:
    """Provision chains and hotels (as DATABASE_ADMIN_URL)."""


@hotels.command("list")
def hotels_list() -> None:
    """List every hotel with its chain."""
    settings = load_settings()

    async def work() -> None:
        async def body(prov: Provisioning) -> None:
            for hotel in await prov.hotels():
                click.echo(f"{hotel.chain_slug}\t{hotel.slug}\t{hotel.name}")

        await with_provisioning(provisioning_dsn(settings), body)

    run(work())


@hotels.command("create")
@click.option("--chain", "chain_slug", required=True)
@click.option("--chain-name", default=None, help="Creates the chain if it does not exist.")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--description", default="")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--language", default="en", show_default=True, help="ISO 639-1.")
def hotels_create(
    chain_slug: str,
    chain_name: str | None,
    slug: str,
    name: str,
    description: str,
    timezone: str,
    language: str,
) -> None:
    """Create a hotel (a tenant)."""
    from hotelchat.services import tenants

    settings = load_settings()

    async def body(prov: Provisioning) -> None:
        hotel_id = await tenants.create_hotel(
            prov,
            chain_slug=chain_slug,
            chain_name=chain_name,
            slug=slug,
            name=name,
            description=description,
            timezone=timezone,
            language=language,
        )
        click.echo(f"hotel {slug} created (id {hotel_id})")

    run(with_provisioning(provisioning_dsn(settings), body))


@hotels.command("settings")
@click.option("--hotel", "hotel_slug", required=True, help="The hotel's slug.")
@click.option("--budget", default=None, metavar="USD|none", help="Monthly AI budget; none: none.")
@click.option("--context-tokens", type=int, default=None, help="Tokens of prompt: 200 to 100,000.")
@click.option("--model", default=None, metavar="NAME|default", help="The model; default: ours.")
@click.option("--ai", type=click.Choice(["on", "off"]), default=None, help="The assistant on/off.")
@click.option(
    "--image-understanding", "images", type=click.Choice(["on", "off"]), default=None,
    help="Guests' photos shown to the model (it must see images); off by default.",
)  # fmt: skip
def hotels_settings(
    hotel_slug: str,
    budget: str | None,
    context_tokens: int | None,
    model: str | None,
    ai: str | None,
    images: str | None,
) -> None:
    """Show a hotel's assistant settings and this month's AI spend (in the hotel's time zone),
    after changing those given (as DATABASE_URL, through the application)."""
    from hotelchat import bootstrap
    from hotelchat.services.assistant_settings import KEEP, AssistantChanges, change_assistant

    settings = load_settings()
    configure_logging("WARNING", "console")
    try:
        budget_usd = KEEP if budget is None else None if budget == "none" else float(budget)
    except ValueError:
        raise click.BadParameter("a number of US dollars, or none", param_hint="--budget") from None
    changes = AssistantChanges(
        ai_enabled=KEEP if ai is None else ai == "on",
        ai_model=KEEP if model is None else None if model == "default" else model,
        monthly_budget_usd=budget_usd,
        context_token_budget=KEEP if context_tokens is None else context_tokens,
        image_understanding=KEEP if images is None else images == "on",
    )

    async def work() -> str:
        container = await bootstrap.build(settings)
        try:
            hotel_id = await hotel_id_of(container, hotel_slug)
            now, spend = await change_assistant(container.deps, hotel_id, changes)
        finally:
            await container.close()
        model_name = now.ai_model or f"default ({settings.openai_default_model})"
        limit = "none" if now.monthly_budget_usd is None else f"{now.monthly_budget_usd:.2f} USD"
        used = "" if spend.used is None else f" ({spend.used:.0%} of the budget)"
        return (
            f"hotel:            {hotel_slug}\n"
            f"AI:               {'on' if now.ai_enabled else 'off'}\n"
            f"model:            {model_name}\n"
            f"context tokens:   {now.context_token_budget}\n"
            f"photos to model:  {'on' if now.image_understanding else 'off'}\n"
            f"monthly budget:   {limit}\n"
            f"spent this month: {spend.spent_usd:.4f} USD{used}"
        )

    click.echo(run(work()))


@main.group()
def senders() -> None:
    """Route WhatsApp numbers to hotels (as DATABASE_ADMIN_URL)."""


@senders.command("add")
@click.option("--hotel", "hotel_slug", required=True)
@click.option("--number", required=True, help="The WhatsApp number, E.164 (+34…).")
@click.option("--account-sid", required=True, help="The Twilio account owning the number (AC…).")
def senders_add(hotel_slug: str, number: str, account_sid: str) -> None:
    """Add a WhatsApp number. The auth token is read from TWILIO_AUTH_TOKEN or prompted for, so
    it never appears in the shell history or the process list."""
    from hotelchat.services import tenants

    settings = load_settings()
    keys = cipher(settings, required=True)
    token = os.environ.get("TWILIO_AUTH_TOKEN") or click.prompt(
        "Twilio auth token", hide_input=True
    )

    async def body(prov: Provisioning) -> None:
        hotel = await prov.hotel(hotel_slug)
        await tenants.route_number(prov, hotel.id, SenderSpec(number, account_sid, token))
        click.echo(f"{number} now routes to {hotel_slug}")

    run(with_provisioning(provisioning_dsn(settings), body, keys))


@main.group()
def agents() -> None:
    """Manage agent logins (as DATABASE_ADMIN_URL)."""


@agents.command("add")
@click.option("--chain", "chain_slug", required=True)
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True)
@click.option("--hotel", "hotel_slugs", multiple=True, required=True, help="Repeat for each hotel.")
@click.option("--manager", is_flag=True, help="May manage the hotels' settings.")
def agents_add(
    chain_slug: str, email: str, display_name: str, hotel_slugs: tuple[str, ...], manager: bool
) -> None:
    """Create an agent, or update their name, hotels and password. The password is read from
    AGENT_PASSWORD or prompted for."""
    settings = load_settings()
    password = os.environ.get("AGENT_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )

    from hotelchat.services import tenants

    async def body(prov: Provisioning) -> None:
        await tenants.save_agent(
            prov,
            chain_slug=chain_slug,
            email=email,
            name=display_name,
            password=password,
            hotel_slugs=hotel_slugs,
            role="manager" if manager else "agent",
        )
        click.echo(f"agent {email} saved")

    run(with_provisioning(provisioning_dsn(settings), body))


@main.group()
def kb() -> None:
    """A hotel's knowledge base (as DATABASE_URL, through the application)."""


@kb.command("import")
@click.option("--hotel", "hotel_slug", required=True)
@click.option(
    "--replace",
    is_flag=True,
    help="Make the knowledge base exactly the file: entries not in it are removed (what the "
    "Kubernetes operator does with a Hotel's ConfigMap).",
)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def kb_import(hotel_slug: str, replace: bool, path: Path) -> None:
    """Add or update entries from a Markdown (one `##` heading per entry, optional first line
    `Keywords: …`) or CSV (title, body, keywords) file. The worker computes their vectors."""
    from hotelchat import bootstrap
    from hotelchat.services import knowledge

    settings = load_settings()
    configure_logging("WARNING", "console")

    content = path.read_bytes()

    async def work() -> str:
        container = await bootstrap.build(settings)
        try:
            hotel_id = await hotel_id_of(container, hotel_slug)
            deps = container.deps
            if replace:
                synced = await knowledge.sync_file(
                    deps.knowledge_base, deps.jobs, hotel_id, path.name, content
                )
                return (
                    f"{hotel_slug}: {synced.added} entries added, {synced.updated} updated, "
                    f"{synced.removed} removed"
                )
            added, updated = await knowledge.import_file(deps, hotel_id, path.name, content)
            return f"{hotel_slug}: {added} entries added, {updated} updated"
        finally:
            await container.close()

    click.echo(run(work()))


@kb.command("embed")
@click.option("--hotel", "hotel_slug", required=True)
def kb_embed(hotel_slug: str) -> None:
    """Compute now the vectors of entries that lack current ones (the worker does it anyway)."""
    from hotelchat import bootstrap
    from hotelchat.services import knowledge

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work() -> int:
        container = await bootstrap.build(settings)
        try:
            hotel_id = await hotel_id_of(container, hotel_slug)
            return await knowledge.embed_pending(container.deps, hotel_id)
        finally:
            await container.close()

    click.echo(f"{hotel_slug}: {run(work())} entries embedded")


@main.group("reservations")
def reservations_group() -> None:
    """A hotel's reservations (as DATABASE_URL, through the application)."""


@reservations_group.command("import")
@click.option("--hotel", "hotel_slug", required=True)
@click.option(
    "--region",
    default=None,
    metavar="CC",
    help="Country of phone numbers written without a country code (ISO, e.g. ES).",
)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def reservations_import(hotel_slug: str, region: str | None, path: Path) -> None:
    """Add or update reservations, by code, from a CSV export (UTF-8, header row; columns code,
    guest_name, check_in, check_out, and optionally phone_number, email, room_type, adults,
    children, status, notes). A malformed row imports nothing and names its line."""
    from hotelchat.adapters.reservations_csv import CsvReservationSource
    from hotelchat.services import reservations

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> tuple[int, int]:
        source = CsvReservationSource(path, default_region=region)
        return await reservations.import_reservations(deps, hotel_id, source)

    added, updated = run(in_hotel(settings, hotel_slug, work))
    click.echo(f"{hotel_slug}: {added} reservations added, {updated} updated")


@reservations_group.command("link")
@click.option("--hotel", "hotel_slug", required=True)
@click.option("--code", required=True, help="The reservation's code.")
@click.option(
    "--site",
    "site_url",
    default=None,
    help="A page of the hotel's website that carries embed.js: the link opens the chat "
    "widget there instead of HotelChat's own chat page.",
)
def reservations_link(hotel_slug: str, code: str, site_url: str | None) -> None:
    """Print a web-chat link to send the guest of reservation CODE (to the chat page at
    PUBLIC_BASE_URL, or with --site to the widget on the hotel's website): whoever opens it
    within 30 days chats with the reservation tied to their chat. A newer link moves the
    reservation to whoever opens that one."""
    from hotelchat.services import reservations

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> str:
        return await reservations.link_url(
            deps, hotel_id, hotel_slug, code, base_url=settings.public_url, site_url=site_url
        )

    click.echo(run(in_hotel(settings, hotel_slug, work)))


@main.group("templates")
def templates_group() -> None:
    """A hotel's WhatsApp templates (as DATABASE_URL, through the application)."""


@templates_group.command("sync")
@click.option("--hotel", "hotel_slug", required=True)
def templates_sync(hotel_slug: str) -> None:
    """Make the hotel's templates those of its Twilio account's Content API, with their
    approval status (only approved ones are offered); hand-added templates stay."""
    from hotelchat.services import templates

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> templates.SyncResult:
        return await templates.sync_hotel(deps, hotel_id)

    result = run(in_hotel(settings, hotel_slug, work))
    click.echo(
        f"{hotel_slug}: {result.added} templates added, {result.changed} changed, "
        f"{result.removed} removed; {result.offered} approved"
    )


@templates_group.command("add")
@click.option("--hotel", "hotel_slug", required=True)
@click.option("--sid", "content_sid", required=True, help="The ContentSid, HX + 32 hex digits.")
@click.option("--name", "friendly_name", required=True, help="Its name; variants share it.")
@click.option("--language", required=True, help="ISO 639-1, e.g. en.")
@click.option("--body", required=True, help="The text, with {{1}}-style placeholders.")
@click.option("--var", "variables", multiple=True, metavar="N=SAMPLE", help="A sample value.")
@click.option("--status", default="approved", show_default=True, help="Approval status.")
def templates_add(
    hotel_slug: str,
    content_sid: str,
    friendly_name: str,
    language: str,
    body: str,
    variables: tuple[str, ...],
    status: str,
) -> None:
    """Add or replace a template by hand (tests and development)."""
    from hotelchat.domain.templates import Template, check_template
    from hotelchat.services.templates import registry

    settings = load_settings()
    configure_logging("WARNING", "console")
    samples: dict[str, str] = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not N=SAMPLE", param_hint="--var")
        samples[name] = value
    template = Template(content_sid, friendly_name, language, body, samples, status, "manual")

    async def work(deps: Deps, hotel_id: int) -> bool:
        return await registry(deps).save_template(hotel_id, check_template(template))

    added = run(in_hotel(settings, hotel_slug, work))
    click.echo(f"{hotel_slug}: template {content_sid} {'added' if added else 'replaced'}")


@templates_group.command("list")
@click.option("--hotel", "hotel_slug", required=True)
def templates_list(hotel_slug: str) -> None:
    """The hotel's templates: ContentSid, name, language, status, source, body."""
    from hotelchat.domain.templates import Template
    from hotelchat.services.templates import registry

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> list[Template]:
        return await registry(deps).templates(hotel_id)

    for t in run(in_hotel(settings, hotel_slug, work)):
        click.echo(
            f"{t.content_sid}\t{t.friendly_name}\t{t.language}\t{t.approval_status}\t"
            f"{t.source}\t{t.body}"
        )


@templates_group.command("remove")
@click.option("--hotel", "hotel_slug", required=True)
@click.option("--sid", "content_sid", required=True)
def templates_remove(hotel_slug: str, content_sid: str) -> None:
    """Remove a template (a synced one comes back at the next sync if still at Twilio)."""
    from hotelchat.domain.errors import NotFound
    from hotelchat.services.templates import registry

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> None:
        if not await registry(deps).remove_template(hotel_id, content_sid):
            raise NotFound(f"no template {content_sid} in {hotel_slug}")

    run(in_hotel(settings, hotel_slug, work))
    click.echo(f"{hotel_slug}: template {content_sid} removed")


@main.group("journeys")
def journeys_group() -> None:
    """Templates a hotel sends relative to its reservations (as DATABASE_URL)."""


@journeys_group.command("add")
@click.option("--hotel", "hotel_slug", required=True)
@click.option("--name", required=True, help="The journey's name, e.g. pre-arrival.")
@click.option("--template", "template_name", required=True, help="The template's name.")
@click.option("--anchor", type=click.Choice(["check_in", "check_out"]), required=True)
@click.option("--days", "offset_days", type=int, required=True, help="Days from it: -1 before.")
@click.option("--at", "send_time", required=True, metavar="HH:MM", help="Hotel time.")
@click.option("--quiet", default=None, metavar="HH:MM-HH:MM", help="Quiet hours, hotel time.")
@click.option("--var", "variables", multiple=True, metavar="N=FIELD", help="e.g. 1=first_name.")
def journeys_add(
    hotel_slug: str,
    name: str,
    template_name: str,
    anchor: str,
    offset_days: int,
    send_time: str,
    quiet: str | None,
    variables: tuple[str, ...],
) -> None:
    """Send template TEMPLATE (in the guest's language, else the hotel's) DAYS from each
    reservation's check-in or check-out at HH:MM hotel time, once per reservation; a send
    inside quiet hours waits until they end. Fields: guest_name, first_name, check_in,
    check_out, room_type, code, hotel_name, nights."""
    from hotelchat.domain.templates import Journey
    from hotelchat.services.journeys import check_journey, parse_clock
    from hotelchat.services.templates import registry

    settings = load_settings()
    configure_logging("WARNING", "console")
    mapping: dict[str, str] = {}
    for item in variables:
        placeholder, sep, source = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not N=FIELD", param_hint="--var")
        mapping[placeholder] = source
    quiet_start = quiet_end = None

    async def work(deps: Deps, hotel_id: int) -> int:
        nonlocal quiet_start, quiet_end
        if quiet is not None:
            start, sep, end = quiet.partition("-")
            if not sep:
                raise click.BadParameter("use HH:MM-HH:MM", param_hint="--quiet")
            quiet_start, quiet_end = parse_clock(start, "--quiet"), parse_clock(end, "--quiet")
        at = parse_clock(send_time, "--at")
        journey = Journey(0, name, template_name, anchor, offset_days, at,
                          quiet_start, quiet_end, mapping)  # fmt: skip
        return await registry(deps).add_journey(hotel_id, check_journey(journey))

    journey_id = run(in_hotel(settings, hotel_slug, work))
    click.echo(f"{hotel_slug}: journey {name} added (#{journey_id})")


@journeys_group.command("list")
@click.option("--hotel", "hotel_slug", required=True)
def journeys_list(hotel_slug: str) -> None:
    """The hotel's journeys."""
    from hotelchat.domain.templates import Journey
    from hotelchat.services.templates import registry

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> list[Journey]:
        return await registry(deps).journeys(hotel_id)

    for j in run(in_hotel(settings, hotel_slug, work)):
        quiet = (
            f"{j.quiet_start:%H:%M}-{j.quiet_end:%H:%M}" if j.quiet_start and j.quiet_end else "-"
        )
        mapping = ",".join(f"{k}={v}" for k, v in j.variables.items()) or "-"
        click.echo(
            f"{j.name}\t{j.template_name}\t{j.anchor}{j.offset_days:+d}d {j.send_time:%H:%M}\t"
            f"quiet {quiet}\t{mapping}"
        )


@journeys_group.command("remove")
@click.option("--hotel", "hotel_slug", required=True)
@click.option("--name", required=True)
def journeys_remove(hotel_slug: str, name: str) -> None:
    """Remove a journey (what it sent stays in the conversations)."""
    from hotelchat.domain.errors import NotFound
    from hotelchat.services.templates import registry

    settings = load_settings()
    configure_logging("WARNING", "console")

    async def work(deps: Deps, hotel_id: int) -> None:
        if not await registry(deps).remove_journey(hotel_id, name):
            raise NotFound(f"no journey {name!r} in {hotel_slug}")

    run(in_hotel(settings, hotel_slug, work))
    click.echo(f"{hotel_slug}: journey {name} removed")


@main.group("eval")
def eval_group() -> None:
    """Measure the assistant on the evaluation sets in evals/."""


@eval_group.command("retrieval")
@click.option(
    "--questions",
    "paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A question file (JSON lines); repeat for more. For the demo hotel, or with "
    "--knowledge for that hotel. Default: evals/retrieval/{questions,holdout,unanswerable}.jsonl.",
)
@click.option(
    "--knowledge",
    "knowledge_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A hotel's knowledge base (Markdown or CSV, as `hotelchat kb import` takes it), "
    "imported into a fresh hotel and asked the --questions and --unanswerable files.",
)
@click.option(
    "--unanswerable",
    "unanswerable_paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --knowledge: a file of questions its knowledge base does not answer.",
)
@click.option(
    "--hotel",
    "hotel_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder with knowledge.md, questions.jsonl and unanswerable.jsonl (e.g. "
    "evals/retrieval/hotels/NAME); repeat for more.",
)
@click.option("--holdout", is_flag=True, help="With --hotel: also its holdout.jsonl.")
@click.option("--demo", is_flag=True, help="With --hotel or --knowledge: the demo hotel too.")
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the knowledge bases' vectors in this SQLite file between runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--misses", is_flag=True, help="List the questions whose entry is not first.")
@click.option(
    "--min-recall1", type=click.FloatRange(0, 1), default=0.85, show_default=True,
    help="Target recall@1 of each file, all languages.",
)  # fmt: skip
@click.option(
    "--min-recall3", type=click.FloatRange(0, 1), default=0.95, show_default=True,
    help="Target recall@3 of each file, all languages.",
)  # fmt: skip
@click.option(
    "--min-language-recall3", type=click.FloatRange(0, 1), default=0.85, show_default=True,
    help="Target recall@3 of every language of each file.",
)  # fmt: skip
@click.option(
    "--max-unanswerable-alone",
    type=click.FloatRange(0, 1),
    default=None,
    help="Largest share of unanswerable questions answered alone (default: no limit).",
)
def eval_retrieval(
    paths: tuple[Path, ...],
    knowledge_path: Path | None,
    unanswerable_paths: tuple[Path, ...],
    hotel_dirs: tuple[Path, ...],
    holdout: bool,
    demo: bool,
    cache: Path | None,
    as_json: bool,
    misses: bool,
    min_recall1: float,
    min_recall3: float,
    min_language_recall3: float,
    max_unanswerable_alone: float | None,
) -> None:
    """Recall@1 and recall@3 per language of the production retrieval, on a throwaway embedded
    PostgreSQL (DATABASE_URL is not used): on the demo hotel by default, or on hotels whose
    knowledge base is imported from a file (--knowledge, --hotel) through the `kb import` path,
    each into its own tenant. Exit status 1 when a gated file misses a target, 2 for a
    malformed knowledge or question file. Gated: the demo's eval set (questions.jsonl) by
    default; every --questions file; a --hotel folder's questions.jsonl (and holdout.jsonl)."""
    import json

    from hotelchat.entrypoints import evaluate

    settings = load_settings()
    configure_logging("WARNING", "console")
    targets = evaluate.Targets(
        min_recall1, min_recall3, min_language_recall3, max_unanswerable_alone
    )
    if unanswerable_paths and knowledge_path is None:
        raise click.UsageError("--unanswerable needs --knowledge")
    if knowledge_path is not None and not paths and not unanswerable_paths:
        raise click.UsageError("--knowledge needs --questions FILE")
    try:
        subjects = []
        if knowledge_path is not None:
            subjects.append(evaluate.load_subject(knowledge_path, paths, unanswerable_paths))
        subjects += [evaluate.load_hotel_folder(d, holdout=holdout) for d in hotel_dirs]
        if not subjects or demo:
            demo_paths = paths if knowledge_path is None else ()
            subjects.insert(0, evaluate.demo_subject(demo_paths or None))
    except evaluate.QuestionFileError as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(2) from None
    reports = run(evaluate.evaluate_embedded(settings, subjects, cache=cache))
    gated = [s.gated for s in subjects]
    if as_json:
        output = evaluate.to_json_all(reports, targets, gated)
        click.echo(json.dumps(output, ensure_ascii=False, indent=2))
    else:
        click.echo(evaluate.render_all(reports, targets, gated, misses=misses))
    missed = [line for r, g in zip(reports, gated, strict=True) for line in r.missed(targets, g)]
    raise SystemExit(1 if missed else 0)


@main.group()
def emulator() -> None:
    """Run a loopback emulator of an external API."""


@emulator.command("twilio")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8010, show_default=True)
@click.option("--no-callbacks", is_flag=True, help="Do not send delivery-status callbacks.")
@click.option("--demo-templates", is_flag=True, help="Know the demo templates, for any account.")
def emulator_twilio(host: str, port: int, no_callbacks: bool, demo_templates: bool) -> None:
    """The Twilio Messages and Content APIs: point TWILIO_API_BASE_URL here."""
    from aiohttp import web

    from hotelchat.emulators.twilio_api import TwilioEmulator
    from hotelchat.services.demo import DEMO_TEMPLATES

    configure_logging("INFO", "console")
    emulator = TwilioEmulator(callbacks=not no_callbacks)
    for t in DEMO_TEMPLATES if demo_templates else ():
        emulator.add_content(
            "*",
            sid=t.content_sid,
            friendly_name=t.friendly_name,
            language=t.language,
            body=t.body,
            variables=dict(t.variables),
        )
    web.run_app(emulator.app(), host=host, port=port, print=None)


@emulator.command("openai")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8020, show_default=True)
@click.option(
    "--time-to-first-token",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds before the first token of a chat answer, as a real model takes.",
)
@click.option(
    "--tokens-per-second",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Streamed pieces (about a word each) per second after the first; unset: no wait.",
)
def emulator_openai(
    host: str, port: int, time_to_first_token: float, tokens_per_second: float | None
) -> None:
    """The OpenAI chat-completions API: point OPENAI_BASE_URL at http://HOST:PORT/v1."""
    from aiohttp import web

    from hotelchat.emulators.openai_api import OpenAIEmulator

    configure_logging("INFO", "console")
    emulated = OpenAIEmulator(
        time_to_first_token=time_to_first_token, tokens_per_second=tokens_per_second
    )
    web.run_app(emulated.app(), host=host, port=port, print=None)


# --- helpers ---


async def hotel_id_of(container: Any, slug: str) -> int:
    """The id of hotel `slug`; raises `NotFound`."""
    from hotelchat.domain.errors import NotFound

    hotel_id: int | None = await container.store.route_hotel(slug, for_guests=False)
    if hotel_id is None:
        raise NotFound(f"no hotel {slug!r}")
    return hotel_id


async def in_hotel(settings: Settings, slug: str, body: Callable[[Deps, int], Awaitable[T]]) -> T:
    """`body(deps, hotel_id)` for hotel `slug`, on a container built from `settings` and closed
    after. Raises `NotFound` when there is no such hotel."""
    from hotelchat import bootstrap

    container = await bootstrap.build(settings)
    try:
        return await body(container.deps, await hotel_id_of(container, slug))
    finally:
        await container.close()


async def with_provisioning(
    dsn: str, body: Callable[[Provisioning], Awaitable[None]], keys: TokenCipher | None = None
) -> None:
    """Run `body` with a `Provisioning` on one connection to `dsn`, encrypting tokens with
    `keys`."""
    async with open_provisioning(dsn, keys) as prov:
        await body(prov)
