"""The provisioning commands as an operator types them: they go through `services.tenants` (the
path the Kubernetes operator takes too), as the operator's role when DATABASE_OPERATOR_URL is
set, and Twilio tokens never reach the database unencrypted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from cryptography.fernet import Fernet

from tests.conftest import CIPHER, ENCRYPTION_KEY, Backing, Tenant

SID = "AC" + "ab" * 16
TOKEN = "cli-token-" + "z" * 22


def hotelchat(
    backing: Backing, *args: str, keys: bool = True, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": backing.app_dsn,
        "DATABASE_OPERATOR_URL": backing.operator_dsn,
        "REDIS_URL": backing.redis_url,
        "LOG_FORMAT": "console",
        **env,
    }
    if keys:
        environment["ENCRYPTION_KEYS"] = ENCRYPTION_KEY
    return subprocess.run(
        [sys.executable, "-m", "hotelchat", *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_hotel_its_number_and_its_agent_as_the_operator_role(
    backing: Backing, admin: asyncpg.Connection
) -> None:
    made = hotelchat(
        backing,
        "hotels",
        "create",
        "--chain",
        "sunrise",
        "--chain-name",
        "Sunrise",
        "--slug",
        "lisbon",
        "--name",
        "Lisbon",
        "--timezone",
        "Europe/Lisbon",
        "--language",
        "pt",
    )
    assert made.returncode == 0, made.stderr
    routed = hotelchat(
        backing,
        "senders",
        "add",
        "--hotel",
        "lisbon",
        "--number",
        "+351210000000",
        "--account-sid",
        SID,
        TWILIO_AUTH_TOKEN=TOKEN,
    )
    assert routed.returncode == 0, routed.stderr
    assert "+351210000000 now routes to lisbon" in routed.stdout
    stored = await admin.fetchrow("SELECT auth_token, auth_token_ciphertext FROM whatsapp_senders")
    assert stored is not None
    assert stored["auth_token"] is None
    assert CIPHER.decrypt(stored["auth_token_ciphertext"]) == TOKEN
    agent = hotelchat(
        backing,
        "agents",
        "add",
        "--chain",
        "sunrise",
        "--email",
        "Ana@Example.com",
        "--name",
        "Ana",
        "--hotel",
        "lisbon",
        "--manager",
        AGENT_PASSWORD="a long password",
    )
    assert agent.returncode == 0, agent.stderr
    row = await admin.fetchrow(
        "SELECT a.email, ah.role, a.password_change_required FROM agents a "
        "JOIN agent_hotels ah ON ah.agent_id = a.id"
    )
    assert row is not None
    assert tuple(row) == ("ana@example.com", "manager", False)
    languages = await admin.fetchval("SELECT languages FROM hotels WHERE slug = 'lisbon'")
    assert languages == ["pt"]


def test_a_token_cannot_be_stored_without_the_keys(backing: Backing, tenant: Tenant) -> None:
    refused = hotelchat(
        backing,
        "senders",
        "add",
        "--hotel",
        tenant.slug,
        "--number",
        "+15550000009",
        "--account-sid",
        SID,
        keys=False,
        TWILIO_AUTH_TOKEN=TOKEN,
    )
    assert refused.returncode == 2
    assert "ENCRYPTION_KEYS is not set" in refused.stderr
    malformed = hotelchat(
        backing,
        "senders",
        "add",
        "--hotel",
        tenant.slug,
        "--number",
        "+15550000009",
        "--account-sid",
        SID,
        keys=False,
        ENCRYPTION_KEYS="not-a-key",
        TWILIO_AUTH_TOKEN=TOKEN,
    )
    assert malformed.returncode == 2
    assert "key 1 is not a Fernet key" in malformed.stderr
    assert "not-a-key" not in malformed.stderr


def test_bad_input_to_each_command_says_what_is_wrong(
    backing: Backing, tenant: Tenant, other_tenant: Tenant
) -> None:
    taken = hotelchat(
        backing,
        "senders",
        "add",
        "--hotel",
        other_tenant.slug,
        "--number",
        tenant.phone_number,
        "--account-sid",
        SID,
        TWILIO_AUTH_TOKEN=TOKEN,
    )
    assert taken.returncode == 1
    assert f"routed to hotel '{tenant.slug}'" in taken.stderr
    bad_number = hotelchat(
        backing,
        "senders",
        "add",
        "--hotel",
        tenant.slug,
        "--number",
        "0800 123",
        "--account-sid",
        SID,
        TWILIO_AUTH_TOKEN=TOKEN,
    )
    assert (bad_number.returncode, "E.164" in bad_number.stderr) == (1, True)
    short_token = hotelchat(
        backing,
        "senders",
        "add",
        "--hotel",
        tenant.slug,
        "--number",
        "+15550000009",
        "--account-sid",
        SID,
        TWILIO_AUTH_TOKEN="short",
    )
    assert short_token.returncode == 1
    assert "short" not in short_token.stderr.replace("16 to 128", "")
    bad_zone = hotelchat(
        backing,
        "hotels",
        "create",
        "--chain",
        "chain",
        "--slug",
        "new",
        "--name",
        "New",
        "--timezone",
        "Mars/Base",
    )
    assert (bad_zone.returncode, "IANA" in bad_zone.stderr) == (1, True)
    exists = hotelchat(
        backing, "hotels", "create", "--chain", "chain", "--slug", tenant.slug, "--name", "Again"
    )
    assert (exists.returncode, "exists" in exists.stderr) == (1, True)
    bad_email = hotelchat(
        backing,
        "agents",
        "add",
        "--chain",
        "chain",
        "--email",
        "nobody",
        "--name",
        "N",
        "--hotel",
        tenant.slug,
        AGENT_PASSWORD="a long password",
    )
    assert (bad_email.returncode, "not an email" in bad_email.stderr) == (1, True)


async def test_kb_import_replace_makes_the_knowledge_base_the_file(
    backing: Backing, tenant: Tenant, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    kb = tmp_path / "kb.md"
    kb.write_text("## Parking\nNow EUR 20 a day.\n\n## Spa\nOpen 9:00 to 21:00.\n")
    replaced = hotelchat(backing, "kb", "import", "--hotel", tenant.slug, "--replace", str(kb))
    assert replaced.returncode == 0, replaced.stderr
    assert "1 entries added, 1 updated, 2 removed" in replaced.stdout
    titles = await admin.fetchval("SELECT array_agg(title ORDER BY title) FROM kb_entries")
    assert titles == ["Parking", "Spa"]


def test_keys_generate_prints_a_fernet_key(backing: Backing) -> None:
    made = hotelchat(backing, "keys", "generate", keys=False)
    assert made.returncode == 0
    Fernet(made.stdout.strip())  # raises if it is not a key


def test_migrate_refuses_one_role_for_the_app_and_the_operator(backing: Backing) -> None:
    refused = hotelchat(
        backing,
        "migrate",
        DATABASE_ADMIN_URL=backing.admin_dsn,
        DATABASE_OPERATOR_URL=backing.app_dsn,
    )
    assert refused.returncode == 1
    assert "same role" in refused.stderr


def test_the_operator_needs_its_own_database_url_and_keys(backing: Backing) -> None:
    without_url = hotelchat(backing, "operator", DATABASE_OPERATOR_URL="")
    assert without_url.returncode == 2
    assert "DATABASE_OPERATOR_URL is not set" in without_url.stderr
    without_keys = hotelchat(backing, "operator", keys=False)
    assert without_keys.returncode == 2
    assert "ENCRYPTION_KEYS is not set" in without_keys.stderr
    as_app = hotelchat(backing, "operator", DATABASE_OPERATOR_URL=backing.app_dsn)
    assert as_app.returncode == 1
    assert "not a member of 'hotelchat_operator'" in as_app.stderr
