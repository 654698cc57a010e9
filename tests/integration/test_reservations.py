"""Reservations: CSV exports parsed (and refused, line by line), imported and re-imported, seen
only by the guest of the conversation they belong to (by WhatsApp number or a linked web chat),
never across hotels; reservation links for the web chat, forged, expired, replayed and
cross-hotel; the web-chat path and the `hotelchat reservations` commands end to end."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from quart.typing import TestClientProtocol as Client

from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.adapters.reservations_csv import MAX_FILE_BYTES, CsvReservationSource
from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import demo, inbound, reservations
from hotelchat.services.ports import Reservation, WebGuest
from tests.conftest import CIPHER, PUBLIC_URL, Backing, Tenant
from tests.helpers import GUEST, INBOUND_PATH, hotelchat, signature
from tests.helpers import inbound as inbound_form

HEADER = (
    "code,guest_name,check_in,check_out,phone_number,email,room_type,adults,children,status,notes"
)


def today() -> date:
    """Today in UTC, the test hotels' time zone."""
    return datetime.now(UTC).date()


def day(offset: int) -> str:
    return (today() + timedelta(days=offset)).isoformat()


def stay(code: str, phone: str | None = GUEST, *, arrive: int = 0, leave: int = 3,
         status: str = "confirmed", notes: str | None = None) -> Reservation:  # fmt: skip
    return Reservation(
        code=code,
        guest_name="Ana García",
        check_in=today() + timedelta(days=arrive),
        check_out=today() + timedelta(days=leave),
        status=status,  # type: ignore[arg-type]
        room_type="Double",
        adults=2,
        phone_number=phone,
        notes=notes,
    )


async def parse(content: bytes | str | Path, **options: Any) -> list[Reservation]:
    return [r async for r in CsvReservationSource(content, **options).reservations()]


async def import_csv(container: Container, tenant: Tenant, text: str) -> tuple[int, int]:
    return await reservations.import_reservations(
        container.deps, tenant.hotel_id, CsvReservationSource(text)
    )


async def whatsapp_conversation(container: Container, tenant: Tenant, guest: str = GUEST) -> int:
    """The conversation of WhatsApp `guest` with `tenant`, after one signed inbound message."""
    params = inbound_form(tenant, "Hi", guest=guest)
    record = await inbound.receive_whatsapp(
        container.deps, params, url=PUBLIC_URL + INBOUND_PATH, signature=signature(tenant, params)
    )
    assert record.conversation_id is not None
    return record.conversation_id


async def web_guest(container: Container, tenant: Tenant) -> WebGuest:
    return await container.deps.inbox.web_guest(tenant.hotel_id, None, None)


async def codes_of(container: Container, tenant: Tenant, conversation_id: int) -> list[str]:
    found = await reservations.guest_reservations(container.deps, tenant.hotel_id, conversation_id)
    return [r.code for r in found]


async def linked_web_id(admin: asyncpg.Connection, hotel_id: int, code: str) -> str | None:
    value = await admin.fetchval(
        "SELECT web_id FROM reservations WHERE hotel_id = $1 AND code = $2", hotel_id, code
    )
    return None if value is None else str(value)


# --- the CSV export -------------------------------------------------------------------------


async def test_a_good_export_with_aliases_and_common_phone_formats() -> None:
    text = (
        "\ufeffConfirmation Number;Guest;Arrival;Departure;Mobile;E-mail;Room;Adults;Kids;"
        "Status;Remarks;Rate plan\n"
        "AMA-1001;  Ana   García ;2026-07-01;2026-07-04;+44 (0)20 7946 0958;ana@example.com;"
        "Double;2;1;In House;VIP;BAR\n"
        "\n"
        'AMA-1002;"Li, Wei";2026-08-01;2026-08-02;0034 612 34 56 78;;;;;cancelled;"two\n'
        'lines";BAR\n'
    )
    first, second = await parse(text.encode())
    assert first == Reservation(
        code="AMA-1001",
        guest_name="Ana García",
        check_in=date(2026, 7, 1),
        check_out=date(2026, 7, 4),
        status="checked_in",
        room_type="Double",
        adults=2,
        children=1,
        phone_number="+442079460958",
        email="ana@example.com",
        notes="VIP",
    )
    assert (second.guest_name, second.phone_number, second.status) == (
        "Li, Wei", "+34612345678", "cancelled",
    )  # fmt: skip
    assert (second.adults, second.children, second.room_type, second.email) == (1, 0, None, None)
    assert second.notes == "two\nlines"


async def test_a_national_number_needs_the_country(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(f"{HEADER}\nAB-100,Ana,2026-07-01,2026-07-02,612 34 56 78,,,,,,\n")
    with pytest.raises(InvalidInput, match=r"line 2: phone_number .* country code"):
        await parse(path)
    (found,) = await parse(path, default_region="es")
    assert found.phone_number == "+34612345678"
    with pytest.raises(InvalidInput, match="unknown country"):
        CsvReservationSource(path, default_region="XX")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("A1,Ana,2026-07-01,2026-07-02", "line 3: code must be 3 to 40"),
        ("AB-100,,2026-07-01,2026-07-02", "line 3: guest_name is empty"),
        ("AB-100,Ana,01/07/2026,2026-07-02", "line 3: check_in '01/07/2026' is not a date"),
        ("AB-100,Ana,2026-02-30,2026-03-02", "line 3: check_in '2026-02-30' is not a date"),
        ("AB-100,Ana,2026-07-02,2026-07-02", "line 3: check_out must be after check_in"),
        ("AB-100,Ana,2026-07-01,2026-07-02,not a phone", "line 3: phone_number is not"),
        ("AB-100,Ana,2026-07-01,2026-07-02,,ana.example.com", "line 3: email must be"),
        ("AB-100,Ana,2026-07-01,2026-07-02,,,,-1", "line 3: adults must be a whole number"),
        ("AB-100,Ana,2026-07-01,2026-07-02,,,,2,51", "line 3: children must be a whole"),
        ("AB-100,Ana,2026-07-01,2026-07-02,,,,,,maybe", "line 3: status 'maybe' is not"),
        ("AB-100,Ana,2026-07-01,2026-07-02,,,,,,,,extra", "line 3: 12 fields where the header"),
        (f"AB-100,Ana,2026-07-01,2026-07-02,,,{'x' * 101}", "line 3: room_type must be at most"),
        (f"AB-100,Ana,2026-07-01,2026-07-02,,,,,,,{'x' * 2001}", "line 3: notes must be at most"),
        ('AB-100,"Ana"x,2026-07-01,2026-07-02', "line 3: malformed CSV"),
        ("AB-999,Bo,2026-07-01,2026-07-02\n\nAB-999,Ana,2026-07-01,2026-07-02",
         "line 5: code 'AB-999' is also on line 3"),
    ],
)  # fmt: skip
async def test_each_malformed_row_is_named_by_its_line(rows: str, message: str) -> None:
    text = f"{HEADER}\nOK-001,Fine,2026-07-01,2026-07-02\n{rows}\n"
    with pytest.raises(InvalidInput, match=message):
        await parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("code,guest_name,check_in\nAB-100,Ana,2026-07-01\n", "missing: check_out"),
        ("code,guest_name,check_in,check_out,Booking\n", "columns 'code' and 'Booking' both"),
        (f"{HEADER}\n\n", "a header but no reservations"),
    ],
)
async def test_a_file_without_the_columns_or_rows_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await parse(text)


async def test_an_oversized_or_overlong_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    row = "AB-100,Ana,2026-07-01,2026-07-02,,,,,,,"
    big.write_text(HEADER + "\n" + (row + " " * 200 + "\n") * (MAX_FILE_BYTES // 200))
    with pytest.raises(PayloadTooLarge, match="larger than 5 MB"):
        await parse(big)
    with pytest.raises(PayloadTooLarge):
        await parse(big.read_bytes())
    many = "\n".join(f"C-{n:05},Ana,2026-07-01,2026-07-02" for n in range(10_001))
    with pytest.raises(InvalidInput, match="line 10002: at most 10000 reservations"):
        await parse(f"code,guest_name,check_in,check_out\n{many}\n")


async def test_a_file_not_in_utf8_is_refused_with_its_line() -> None:
    text = f"{HEADER}\nAB-100,Ana,2026-07-01,2026-07-02\nAB-101,José,2026-07-01,2026-07-02\n"
    with pytest.raises(InvalidInput, match="line 3: the file is not UTF-8"):
        await parse(text.encode("latin-1"))
    with pytest.raises(InvalidInput, match="not UTF-8"):
        await parse(text.encode("utf-16"))


# --- importing ------------------------------------------------------------------------------


async def test_an_import_again_updates_and_never_duplicates(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    first = f"{HEADER}\nAB-100,Ana,{day(0)},{day(3)},{GUEST}\nAB-101,Bo,{day(5)},{day(6)}\n"
    assert await import_csv(container, tenant, first) == (2, 0)
    again = f"{HEADER}\nAB-100,Ana García,{day(1)},{day(4)},{GUEST}\nAB-102,Cy,{day(5)},{day(7)}\n"
    assert await import_csv(container, tenant, again) == (1, 1)
    rows = await admin.fetch(
        "SELECT code, guest_name, check_in, source FROM reservations ORDER BY code"
    )
    assert [tuple(r) for r in rows] == [
        ("AB-100", "Ana García", today() + timedelta(days=1), "csv"),
        ("AB-101", "Bo", today() + timedelta(days=5), "csv"),
        ("AB-102", "Cy", today() + timedelta(days=5), "csv"),
    ]


async def test_a_bad_row_imports_nothing(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    text = f"{HEADER}\nAB-100,Ana,{day(0)},{day(3)}\nAB-101,Bo,{day(5)},{day(5)}\n"
    with pytest.raises(InvalidInput, match="line 3"):
        await import_csv(container, tenant, text)
    assert await admin.fetchval("SELECT count(*) FROM reservations") == 0


async def test_the_adapter_names_what_the_table_refuses(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    store = container.deps.reservations
    bad = Reservation("AB-200", "Ana", today(), today() + timedelta(days=1), adults=99)
    with pytest.raises(InvalidInput, match="reservation 'AB-200': adults must be 0 to 50"):
        await store.upsert_many(tenant.hotel_id, [stay("AB-100"), bad], source="pms")
    with pytest.raises(InvalidInput, match="'AB-100' is given twice"):
        await store.upsert_many(tenant.hotel_id, [stay("AB-100"), stay("AB-100")], source="pms")
    with pytest.raises(InvalidInput, match="reservation 'x': code must be"):
        await store.upsert_many(tenant.hotel_id, [stay("x")], source="pms")
    assert await admin.fetchval("SELECT count(*) FROM reservations") == 0


async def test_an_import_from_any_source_is_checked_the_same(
    container: Container, tenant: Tenant
) -> None:
    class Pms:
        name = "pms"

        async def reservations(self) -> AsyncIterator[Reservation]:
            yield stay("PMS-1")
            yield stay("PMS-2", phone="0034612")

    with pytest.raises(InvalidInput, match=r"reservation 'PMS-2': phone_number must be E\.164"):
        await reservations.import_reservations(container.deps, tenant.hotel_id, Pms())


# --- who sees what --------------------------------------------------------------------------


async def test_a_whatsapp_guest_sees_only_their_current_and_coming_stays(
    container: Container, tenant: Tenant
) -> None:
    await container.deps.reservations.upsert_many(
        tenant.hotel_id,
        [
            stay("NEXT-MONTH", arrive=30, leave=33),
            stay("LEAVING-TODAY", arrive=-3, leave=0, status="checked_out"),
            stay("STAYING", arrive=-1, leave=2, status="checked_in", notes="VIP: upgrade"),
            stay("TOMORROW", arrive=1, leave=2),
            stay("LEFT", arrive=-5, leave=-1, status="checked_out"),
            stay("CANCELLED", arrive=1, leave=4, status="cancelled"),
            stay("SOMEONE-ELSE", phone="+15559876543"),
            stay("NO-PHONE", phone=None),
        ],
        source="pms",
    )
    conversation = await whatsapp_conversation(container, tenant)
    found = await reservations.guest_reservations(container.deps, tenant.hotel_id, conversation)
    assert [r.code for r in found] == ["STAYING", "TOMORROW", "NEXT-MONTH", "LEAVING-TODAY"]
    assert all(r.notes is None for r in found)  # staff notes never leave for the assistant
    # At most five, the least relevant left out.
    await container.deps.reservations.upsert_many(
        tenant.hotel_id,
        [stay(f"LATER-{n}", arrive=40 + n, leave=41 + n) for n in range(3)],
        source="pms",
    )
    assert await codes_of(container, tenant, conversation) == [
        "STAYING", "TOMORROW", "NEXT-MONTH", "LATER-0", "LATER-1",
    ]  # fmt: skip
    stranger = await whatsapp_conversation(container, tenant, "+15550009999")
    assert await codes_of(container, tenant, stranger) == []


async def test_the_hotels_own_date_decides_what_is_current(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    # Somewhere on Earth it is already tomorrow or still yesterday: pick such a zone now.
    ahead = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    zone, local = (
        ("Pacific/Kiritimati", ahead)
        if ahead != today()
        else ("Pacific/Pago_Pago", datetime.now(ZoneInfo("Pacific/Pago_Pago")).date())
    )
    assert local != today()
    await admin.execute("UPDATE hotels SET timezone = $1 WHERE id = $2", zone, tenant.hotel_id)
    ends_local_today = Reservation(
        "LOCAL", "Ana", local - timedelta(days=2), local, phone_number=GUEST
    )
    ends_utc_today = Reservation(
        "UTC", "Ana", today() - timedelta(days=2), today(), phone_number=GUEST
    )
    await container.deps.reservations.upsert_many(
        tenant.hotel_id, [ends_local_today, ends_utc_today], source="pms"
    )
    conversation = await whatsapp_conversation(container, tenant)
    # Ahead, the stay that ends on UTC's today is over; behind, the one ending today locally
    # (yesterday in UTC) is not.
    expected = ["LOCAL"] if local > today() else ["LOCAL", "UTC"]
    assert await codes_of(container, tenant, conversation) == expected
    # An unknown zone counts as UTC rather than hiding the guest's stay.
    await admin.execute(
        "UPDATE hotels SET timezone = 'Mars/Olympus' WHERE id = $1", tenant.hotel_id
    )
    assert await codes_of(container, tenant, conversation) == (
        ["UTC", "LOCAL"] if local > today() else ["UTC"]
    )


async def test_another_hotel_never_sees_these_reservations(
    container: Container, tenant: Tenant, other_tenant: Tenant
) -> None:
    await container.deps.reservations.upsert_many(tenant.hotel_id, [stay("A-STAY")], source="pms")
    # The same guest, writing to hotel B from the same number, has no reservation there.
    in_b = await whatsapp_conversation(container, other_tenant)
    assert await codes_of(container, other_tenant, in_b) == []
    in_a = await whatsapp_conversation(container, tenant)
    assert await codes_of(container, tenant, in_a) == ["A-STAY"]
    # Hotel B asking about hotel A's conversation sees nothing either.
    assert await codes_of(container, other_tenant, in_a) == []
    assert await container.deps.reservations.find(other_tenant.hotel_id, "A-STAY") is None
    assert not await container.deps.reservations.link_web_guest(
        other_tenant.hotel_id, "A-STAY", (await web_guest(container, other_tenant)).web_id
    )
    # Hotel B importing the same code makes its own reservation and leaves A's alone.
    await container.deps.reservations.upsert_many(
        other_tenant.hotel_id, [stay("A-STAY", arrive=9, leave=10)], source="pms"
    )
    assert (await container.deps.reservations.find(tenant.hotel_id, "A-STAY")) == stay("A-STAY")


async def test_a_web_guest_sees_only_the_reservations_linked_to_them(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await container.deps.reservations.upsert_many(
        tenant.hotel_id, [stay("WEB-1"), stay("WEB-2", arrive=5, leave=6)], source="pms"
    )
    guest = await web_guest(container, tenant)
    other = await web_guest(container, tenant)
    assert await codes_of(container, tenant, guest.conversation_id) == []
    token = reservations.link_token(container.deps, tenant.slug, "WEB-1")
    assert await reservations.redeem_link(container.deps, guest, token)
    assert await codes_of(container, tenant, guest.conversation_id) == ["WEB-1"]
    assert await codes_of(container, tenant, other.conversation_id) == []
    # A re-import keeps the link.
    await import_csv(container, tenant, f"{HEADER}\nWEB-1,Ana,{day(0)},{day(4)}\n")
    assert await codes_of(container, tenant, guest.conversation_id) == ["WEB-1"]
    assert await linked_web_id(admin, tenant.hotel_id, "WEB-1") == guest.web_id


# --- reservation links ----------------------------------------------------------------------


def aged_token(settings: Settings, data: dict[str, object], age_seconds: int) -> str:
    """A link token signed with the application's key `age_seconds` ago."""

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    assert settings.secret_key is not None
    return str(
        URLSafeTimedSerializer(
            settings.secret_key.get_secret_value(), salt=reservations.LINK_PURPOSE, signer=Earlier
        ).dumps(data)
    )


async def test_links_that_are_forged_expired_or_for_another_hotel_link_nothing(
    container: Container,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
    admin: asyncpg.Connection,
) -> None:
    deps = container.deps
    await deps.reservations.upsert_many(tenant.hotel_id, [stay("LINK-1")], source="pms")
    await deps.reservations.upsert_many(other_tenant.hotel_id, [stay("LINK-1")], source="pms")
    guest = await web_guest(container, tenant)
    good = reservations.link_token(deps, tenant.slug, "LINK-1")
    data = {"s": tenant.slug, "c": "LINK-1", "t": int(time.time() * 1000)}
    refused: list[tuple[str, type[Exception]]] = [
        (good[:-2] + ("AA" if not good.endswith("AA") else "BB"), Unauthenticated),
        ("not a token", Unauthenticated),
        ("x" * 5000, Unauthenticated),
        (aged_token(settings, data, 31 * 24 * 3600), Unauthenticated),
        (deps.tokens.sign("hotelchat.web-guest", data), Unauthenticated),  # another purpose
        (deps.tokens.sign(reservations.LINK_PURPOSE, {**data, "t": "now"}), Unauthenticated),
        (deps.tokens.sign(reservations.LINK_PURPOSE, ["LINK-1"]), Unauthenticated),  # type: ignore[arg-type]
        (reservations.link_token(deps, other_tenant.slug, "LINK-1"), Forbidden),
    ]  # fmt: skip
    for token, error in refused:
        with pytest.raises(error):
            await reservations.redeem_link(deps, guest, token)
    assert await admin.fetchval("SELECT count(*) FROM reservations WHERE web_id IS NOT NULL") == 0
    # Nearly 30 days old still works.
    assert await reservations.redeem_link(deps, guest, aged_token(settings, data, 29 * 24 * 3600))
    assert await linked_web_id(admin, tenant.hotel_id, "LINK-1") == guest.web_id
    assert await linked_web_id(admin, other_tenant.hotel_id, "LINK-1") is None


async def test_a_replayed_link_is_harmless_and_only_a_newer_link_moves_a_reservation(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    deps = container.deps
    await deps.reservations.upsert_many(tenant.hotel_id, [stay("MOVE-1")], source="pms")
    phone, laptop, stranger = [await web_guest(container, tenant) for _ in range(3)]
    first = reservations.link_token(deps, tenant.slug, "MOVE-1")
    assert await reservations.redeem_link(deps, phone, first)
    assert await reservations.redeem_link(deps, phone, first)  # the same guest again
    with pytest.raises(Forbidden, match="used in another chat"):
        await reservations.redeem_link(deps, stranger, first)  # a used link that leaked
    assert await linked_web_id(admin, tenant.hotel_id, "MOVE-1") == phone.web_id
    await asyncio.sleep(0.002)
    newer = reservations.link_token(deps, tenant.slug, "MOVE-1")
    assert await reservations.redeem_link(deps, laptop, newer)
    assert await codes_of(container, tenant, laptop.conversation_id) == ["MOVE-1"]
    assert await codes_of(container, tenant, phone.conversation_id) == []
    with pytest.raises(Forbidden):
        await reservations.redeem_link(deps, phone, first)  # the older link cannot take it back


async def test_a_link_for_an_unknown_or_malformed_code(
    container: Container, tenant: Tenant
) -> None:
    deps = container.deps
    guest = await web_guest(container, tenant)
    token = reservations.link_token(deps, tenant.slug, "GONE-1")
    assert not await reservations.redeem_link(deps, guest, token)
    with pytest.raises(InvalidInput, match="code must be"):
        reservations.link_token(deps, tenant.slug, "bad code!")
    with pytest.raises(NotFound, match="no reservation 'GONE-1'"):
        await reservations.link_url(
            deps, tenant.hotel_id, tenant.slug, "GONE-1", base_url=PUBLIC_URL
        )
    with pytest.raises(InvalidInput):
        await deps.reservations.link_web_guest(tenant.hotel_id, "GONE-1", "not-a-uuid")


@pytest.mark.parametrize(
    "site",
    [
        "hotel.example/contact",
        "javascript:alert(1)//",
        "https:///no-host",
        "https://hotel.example/#top",
        "https://hotel.example/#",
        "https://hotel.example/a page",
        "https://hotel.example/" + "a" * 2000,
        "https://[::1/",
    ],
)
async def test_a_website_link_needs_a_plain_web_page(
    container: Container, tenant: Tenant, site: str
) -> None:
    await container.deps.reservations.upsert_many(tenant.hotel_id, [stay("SITE-1")], source="pms")
    with pytest.raises(InvalidInput, match="website page"):
        await reservations.link_url(
            container.deps, tenant.hotel_id, tenant.slug, "SITE-1", base_url=PUBLIC_URL,
            site_url=site,
        )  # fmt: skip


# --- the web chat -----------------------------------------------------------------------------


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def start_chat(client: Client, slug: str, body: object, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.post(f"/chat/{slug}/session", json=body, headers=headers)


async def test_a_guest_opening_their_link_chats_with_their_reservation(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await container.deps.reservations.upsert_many(tenant.hotel_id, [stay("CHAT-1")], source="pms")
    url = await reservations.link_url(
        container.deps, tenant.hotel_id, tenant.slug, "CHAT-1", base_url=PUBLIC_URL
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL and parts.query == ""
    assert parts.path == f"/chat/{tenant.slug}" and parts.fragment.startswith("r=")
    assert (await client.get(parts.path)).status_code == 200
    response = await start_chat(client, tenant.slug, {"reservation": parts.fragment[2:]})
    assert response.status_code == 200
    session = await response.get_json()
    assert session["reservation_linked"] is True
    assert await codes_of(container, tenant, session["conversation_id"]) == ["CHAT-1"]
    # The guest comes back (their token) with the link again: the same chat, still linked.
    again = await start_chat(
        client, tenant.slug, {"reservation": parts.fragment[2:]}, session["token"]
    )
    assert (await again.get_json())["conversation_id"] == session["conversation_id"]
    assert (await again.get_json())["reservation_linked"] is True
    # Without a link the answer does not mention one.
    plain = await (await start_chat(client, tenant.slug, {}, session["token"])).get_json()
    assert "reservation_linked" not in plain


@pytest.mark.parametrize("link", ["forged", "x" * 5000, "other-hotel", "used-elsewhere"])
async def test_a_bad_link_never_breaks_the_chat(
    client: Client,
    container: Container,
    tenant: Tenant,
    other_tenant: Tenant,
    admin: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    link: str,
) -> None:
    deps = container.deps
    await deps.reservations.upsert_many(tenant.hotel_id, [stay("CHAT-2")], source="pms")
    await deps.reservations.upsert_many(other_tenant.hotel_id, [stay("CHAT-2")], source="pms")
    if link == "other-hotel":
        link = reservations.link_token(deps, other_tenant.slug, "CHAT-2")
    elif link == "used-elsewhere":
        link = reservations.link_token(deps, tenant.slug, "CHAT-2")
        assert await reservations.redeem_link(deps, await web_guest(container, tenant), link)
    before = await admin.fetch("SELECT hotel_id, web_id FROM reservations ORDER BY hotel_id")
    caplog.set_level(logging.WARNING)
    response = await start_chat(client, tenant.slug, {"reservation": link})
    assert response.status_code == 200
    session = await response.get_json()
    assert session["reservation_linked"] is False
    assert await codes_of(container, tenant, session["conversation_id"]) == []
    assert (
        await admin.fetch("SELECT hotel_id, web_id FROM reservations ORDER BY hotel_id") == before
    )
    said = await client.post(
        f"/chat/{tenant.slug}/messages",
        json={"body": "Hello", "client_id": "6f1c1a53-4d52-4f57-9a43-0d0b3c1e2f11"},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert said.status_code == 201
    assert "webchat.reservation_link_refused" in caplog.text
    assert link[:40] not in caplog.text


@pytest.mark.parametrize("body", [{"reservation": 42}, {"reservation": ["a"]}, ["reservation"]])
async def test_a_malformed_session_request_is_400(
    client: Client, tenant: Tenant, body: object
) -> None:
    response = await start_chat(client, tenant.slug, body)
    assert response.status_code == 400


# --- the demo ---------------------------------------------------------------------------------


async def test_the_demo_guest_has_a_booking_whenever_the_demo_starts(
    container: Container, admin: asyncpg.Connection
) -> None:
    await demo.seed_demo(Provisioning(admin, CIPHER), {})
    # A second start moves the dates, adds nothing.
    await demo.seed_demo(Provisioning(admin, CIPHER), {})
    assert await admin.fetchval("SELECT count(*) FROM reservations") == 5
    hotel = next(h for h in demo.HOTELS if h.slug == "amapola-resort")
    sender = await admin.fetchrow(
        """SELECT s.hotel_id, s.account_sid, s.auth_token_ciphertext FROM whatsapp_senders s
           WHERE s.phone_number = $1""",
        hotel.whatsapp_number,
    )
    assert sender is not None
    amapola = Tenant(
        sender["hotel_id"], hotel.slug, hotel.whatsapp_number,
        sender["account_sid"], CIPHER.decrypt(sender["auth_token_ciphertext"]),
    )  # fmt: skip
    hotel_id = amapola.hotel_id
    conversation = await whatsapp_conversation(container, amapola, demo.SIMULATED_GUEST)
    found = await reservations.guest_reservations(container.deps, hotel_id, conversation)
    assert [r.code for r in found] == ["AMA-24017", "AMA-24388"]
    assert found[0].status == "checked_in"


# --- the command line -------------------------------------------------------------------------


async def test_the_import_and_link_commands(
    backing: Backing,
    settings: Settings,
    tenant: Tenant,
    container: Container,
    admin: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    assert settings.secret_key is not None
    key = settings.secret_key.get_secret_value()

    async def cli(*args: str, secret: str | None = key) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(hotelchat, backing, secret, "reservations", *args)

    export = tmp_path / "export.csv"
    export.write_text(
        f"{HEADER}\nCLI-100,Ana,{day(0)},{day(2)},{GUEST}\nCLI-101,Bo,{day(1)},{day(3)}\n"
    )
    done = await cli("import", "--hotel", tenant.slug, str(export))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{tenant.slug}: 2 reservations added, 0 updated"

    export.write_text(f"{HEADER}\nCLI-102,Cy,{day(0)},{day(2)}\nCLI-103,Di,{day(0)},2026-13-01\n")
    done = await cli("import", "--hotel", tenant.slug, str(export))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "error: line 3: check_out '2026-13-01' is not a date written YYYY-MM-DD"
    )
    assert await admin.fetchval("SELECT count(*) FROM reservations") == 2

    done = await cli("link", "--hotel", tenant.slug, "--code", "CLI-101")
    assert done.returncode == 0, done.stderr
    url = urlsplit(done.stdout.strip())
    assert (url.scheme, url.netloc, url.path, url.query) == (
        "https", "chat.example.test", f"/chat/{tenant.slug}", "",
    )  # fmt: skip
    assert url.fragment.startswith("r=")
    guest = await web_guest(container, tenant)
    assert await reservations.redeem_link(container.deps, guest, url.fragment[2:])
    assert await codes_of(container, tenant, guest.conversation_id) == ["CLI-101"]

    site = "https://www.hotel-a.example/contact?lang=en"
    done = await cli("link", "--hotel", tenant.slug, "--code", "CLI-101", "--site", site)
    assert done.returncode == 0, done.stderr
    page, _, fragment = done.stdout.strip().partition("#")
    assert page == site and fragment.startswith("hotelchat-r=")
    assert await reservations.redeem_link(
        container.deps, guest, fragment.removeprefix("hotelchat-r=")
    )
    done = await cli("link", "--hotel", tenant.slug, "--code", "CLI-101", "--site", "ftp://x/")
    assert (done.returncode, done.stderr.strip()) == (
        1, "error: the website page must be an http:// or https:// URL with a host",
    )  # fmt: skip

    done = await cli("link", "--hotel", tenant.slug, "--code", "CLI-999")
    assert (done.returncode, done.stderr.strip()) == (
        1, f"error: no reservation 'CLI-999' in {tenant.slug}",
    )  # fmt: skip
    done = await cli("link", "--hotel", tenant.slug, "--code", "CLI-101", secret=None)
    assert done.returncode == 2 and "SECRET_KEY" in done.stderr
