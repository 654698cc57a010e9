"""Service requests on real PostgreSQL and Redis: filed once per guest message and kind however
often the assistant's job runs, validated, listed and closed by agents through the dashboard's
API (CSRF, malformed and oversized bodies, closing twice), invisible across hotels, and announced
to the hotel's dashboards (and only to them) as `service_request` events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.errors import InvalidInput, NotFound
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import service_requests
from hotelchat.services.ports import ServiceRequest
from tests.conftest import Tenant, create_agent
from tests.helpers import as_browser, csrf_of, login, post, receive
from tests.live import TIMEOUT, Live, live_server, login_cookie, socket


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def logged_in(client: Client, admin: asyncpg.Connection, email: str, hotel: str) -> str:
    """Agent `email` of hotel `hotel`, logged in on `client`; returns the CSRF token."""
    await create_agent(admin, email, [hotel], name=email.split("@", maxsplit=1)[0].title())
    assert await login(client, email) == 303
    return await csrf_of(client)


async def file_request(
    container: Container,
    tenant: Tenant,
    kind: str = "taxi",
    details: str = "Taxi to the airport at 6am",
    *,
    text: str = "Can you get me a taxi?",
) -> ServiceRequest:
    """A guest writes; the assistant files a request for that message."""
    message_id = await receive(container, tenant, text)
    conversation_id = await conversation_of(container, tenant)
    return await service_requests.open_request(
        container.deps,
        tenant.hotel_id,
        conversation_id,
        kind=kind,
        details=details,
        message_id=message_id,
    )


async def status_of(admin: asyncpg.Connection, request_id: int) -> str:
    status: str = await admin.fetchval(
        "SELECT status FROM service_requests WHERE id = $1", request_id
    )
    return status


async def conversation_of(container: Container, tenant: Tenant) -> int:
    (conversation,) = await container.deps.inbox.conversations(
        tenant.hotel_id, states=None, limit=1
    )
    return conversation.id


# --- filing ---------------------------------------------------------------------------------


async def test_filing_again_for_the_same_message_and_kind_returns_the_first_request(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    message_id = await receive(container, tenant, "A taxi at 6 and towels, please")
    conversation_id = await conversation_of(container, tenant)

    async def file(kind: str, details: str) -> ServiceRequest:
        return await service_requests.open_request(
            container.deps, tenant.hotel_id, conversation_id,
            kind=kind, details=details, message_id=message_id,
        )  # fmt: skip

    first = await file("taxi", "  Taxi at 6am  ")
    assert (first.kind, first.details, first.status) == ("taxi", "Taxi at 6am", "open")
    assert first.guest_name == "Ana García"
    assert first.closed_at is None and first.closed_by_name is None
    # The job runs again (a crash, a retry) and the model files it again, even reworded.
    again = await file("taxi", "A taxi to the airport, 6am")
    assert again == first
    # Concurrent re-runs file it once too.
    racing = await asyncio.gather(*(file("taxi", "Taxi at 6am") for _ in range(5)))
    assert {r.id for r in racing} == {first.id}
    # Another kind for the same message is another request.
    towels = await file("amenities", "Two extra towels")
    assert towels.id != first.id
    rows = await admin.fetch("SELECT kind, message_id FROM service_requests ORDER BY id")
    assert [tuple(r) for r in rows] == [("taxi", message_id), ("amenities", message_id)]


@pytest.mark.parametrize(
    ("kind", "details", "error"),
    [
        ("spaceship", "to Mars", "kind"),
        ("TAXI", "to the airport", "kind"),
        ("", "to the airport", "kind"),
        ("taxi", "", "details"),
        ("taxi", " \n\t ", "details"),
        ("taxi", "x" * 1001, "details"),
    ],
    ids=["unknown-kind", "kind-case", "empty-kind", "empty", "blank", "too-long"],
)
async def test_a_bad_kind_or_details_is_refused_and_stores_nothing(
    container: Container,
    tenant: Tenant,
    admin: asyncpg.Connection,
    kind: str,
    details: str,
    error: str,
) -> None:
    with pytest.raises(InvalidInput, match=error):
        await file_request(container, tenant, kind, details)
    assert await admin.fetchval("SELECT count(*) FROM service_requests") == 0


async def test_details_of_exactly_1000_characters_are_kept_whole(
    container: Container, tenant: Tenant
) -> None:
    request = await file_request(container, tenant, "other", "y" * 1000)
    assert request.details == "y" * 1000


async def test_a_request_cannot_be_filed_on_another_hotels_conversation(
    container: Container, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    message_id = await receive(container, other_tenant, "Taxi please")
    theirs = await conversation_of(container, other_tenant)
    with pytest.raises(NotFound):
        await service_requests.open_request(
            container.deps, tenant.hotel_id, theirs,
            kind="taxi", details="Taxi", message_id=message_id,
        )  # fmt: skip
    assert await admin.fetchval("SELECT count(*) FROM service_requests") == 0


# --- listing and closing over HTTP ----------------------------------------------------------


async def test_agents_list_the_open_requests_newest_first_and_close_them(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    csrf = await logged_in(client, admin, "ana@a.test", tenant.slug)
    taxi = await file_request(container, tenant, "taxi", "Taxi at 6am", text="taxi?")
    towels = await file_request(container, tenant, "amenities", "Two towels", text="towels?")

    listed = await (await client.get("/api/service-requests")).get_json()
    assert [r["id"] for r in listed["requests"]] == [towels.id, taxi.id]
    first = listed["requests"][1]
    assert first == {
        "id": taxi.id, "conversation_id": taxi.conversation_id, "kind": "taxi",
        "details": "Taxi at 6am", "status": "open", "created_at": taxi.created_at.isoformat(),
        "closed_at": None, "closed_by_name": None, "guest_name": "Ana García",
    }  # fmt: skip
    limited = await (await client.get("/api/service-requests?limit=1")).get_json()
    assert [r["id"] for r in limited["requests"]] == [towels.id]

    status, closed = await post(
        client, f"/api/service-requests/{taxi.id}/close", csrf, {"status": "done"}
    )
    assert status == 200
    assert (closed["status"], closed["closed_by_name"]) == ("done", "Ana")
    assert closed["closed_at"] is not None
    status, cancelled = await post(
        client, f"/api/service-requests/{towels.id}/close", csrf, {"status": "cancelled"}
    )
    assert (status, cancelled["status"]) == (200, "cancelled")

    async def ids(query: str) -> list[int]:
        found = await (await client.get(f"/api/service-requests{query}")).get_json()
        return [r["id"] for r in found["requests"]]

    assert await ids("") == []
    assert await ids("?status=open") == []
    assert await ids("?status=done") == [taxi.id]
    assert await ids("?status=cancelled") == [towels.id]
    assert await ids("?status=all") == [towels.id, taxi.id]
    row = await admin.fetchrow(
        "SELECT status, closed_by, closed_at FROM service_requests WHERE id = $1", taxi.id
    )
    assert row is not None and row["status"] == "done" and row["closed_at"] is not None
    assert row["closed_by"] == await admin.fetchval(
        "SELECT id FROM agents WHERE email = 'ana@a.test'"
    )


async def test_closing_twice_is_a_conflict_and_changes_nothing(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    csrf = await logged_in(client, admin, "ana@a.test", tenant.slug)
    request = await file_request(container, tenant)
    path = f"/api/service-requests/{request.id}/close"
    assert (await post(client, path, csrf, {"status": "done"}))[0] == 200
    closed_at = await admin.fetchval(
        "SELECT closed_at FROM service_requests WHERE id = $1", request.id
    )
    for status in ("done", "cancelled"):
        code, body = await post(client, path, csrf, {"status": status})
        assert code == 409
        assert body["error"]["code"] == "already_closed"
        assert body["error"]["message"] == "this request is done already"
    row = await admin.fetchrow(
        "SELECT status, closed_at FROM service_requests WHERE id = $1", request.id
    )
    assert row is not None and (row["status"], row["closed_at"]) == ("done", closed_at)


async def test_another_hotels_requests_are_invisible_and_404(
    client: Client,
    container: Container,
    tenant: Tenant,
    other_tenant: Tenant,
    admin: asyncpg.Connection,
) -> None:
    ours = await file_request(container, tenant, "taxi", "hotel A's secret taxi")
    csrf = await logged_in(client, admin, "bo@b.test", other_tenant.slug)
    theirs = await file_request(container, other_tenant, "housekeeping", "Clean room 12")
    for status in ("open", "all", "done"):
        listed = await (await client.get(f"/api/service-requests?status={status}")).get_json()
        assert ours.id not in [r["id"] for r in listed["requests"]]
        assert "secret" not in str(listed)
    done = {"status": "done"}
    code, body = await post(client, f"/api/service-requests/{ours.id}/close", csrf, done)
    assert (code, body["error"]["code"]) == (404, "not_found")
    unknown, _ = await post(client, "/api/service-requests/999999/close", csrf, done)
    assert unknown == 404  # answers exactly as an id that does not exist
    assert await status_of(admin, ours.id) == "open"
    # Their own request closes as usual.
    code, _ = await post(client, f"/api/service-requests/{theirs.id}/close", csrf, done)
    assert code == 200
    # And at the adapter: hotel B's transaction cannot close hotel A's request.
    agent_b = await admin.fetchval("SELECT id FROM agents WHERE email = 'bo@b.test'")
    with pytest.raises(NotFound):
        await container.deps.service_requests.close(other_tenant.hotel_id, ours.id, agent_b, "done")


async def test_closing_needs_a_session_and_its_csrf_token(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    request = await file_request(container, tenant)
    path = f"/api/service-requests/{request.id}/close"
    assert (await client.get("/api/service-requests")).status_code == 401
    assert (await post(client, path, None, {"status": "done"}))[0] == 401
    await logged_in(client, admin, "ana@a.test", tenant.slug)
    missing, body = await post(client, path, None, {"status": "done"})
    assert (missing, body["error"]["code"]) == (403, "forbidden")
    forged, _ = await post(client, path, "forged-" + "x" * 40, {"status": "done"})
    assert forged == 403
    # A form post with a forged token field is no better.
    response = await client.post(path, form={"status": "done", "csrf_token": "forged"})
    assert response.status_code == 403
    assert await status_of(admin, request.id) == "open"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "done",
        {},
        {"status": "open"},
        {"status": "reopened"},
        {"status": "DONE"},
        {"status": None},
        {"status": 1},
        {"status": "done", "agent_id": 1},
    ],
    ids=[
        "no-body",
        "list",
        "string",
        "empty",
        "open",
        "unknown",
        "case",
        "null",
        "number",
        "extra-field",
    ],
)
async def test_a_malformed_close_is_400_and_changes_nothing(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection, body: Any
) -> None:
    csrf = await logged_in(client, admin, "ana@a.test", tenant.slug)
    request = await file_request(container, tenant)
    code, answer = await post(client, f"/api/service-requests/{request.id}/close", csrf, body)
    assert (code, answer["error"]["code"]) == (400, "invalid_input")
    assert await status_of(admin, request.id) == "open"


async def test_odd_ids_queries_and_oversized_bodies(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    csrf = await logged_in(client, admin, "ana@a.test", tenant.slug)
    request = await file_request(container, tenant)
    headers = {"X-CSRF-Token": csrf}
    odd = ("status=closed", "status=open,done", "limit=0", "limit=201", "limit=abc", "limit=-1")
    for query in (*odd, "limit=99999999999999999999"):
        response = await client.get(f"/api/service-requests?{query}")
        assert response.status_code == 400, query
    for bad_id in ("0", "99999999999999999999999", "-1", "abc"):
        response = await client.post(
            f"/api/service-requests/{bad_id}/close", json={"status": "done"}, headers=headers
        )
        assert response.status_code == 404, bad_id
    huge = await client.post(
        f"/api/service-requests/{request.id}/close",
        data='{"status": "done", "pad": "' + "x" * 100_000 + '"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    not_json = await client.post(
        f"/api/service-requests/{request.id}/close",
        data="status=done",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    assert await status_of(admin, request.id) == "open"


# --- events ---------------------------------------------------------------------------------


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[Live]:
    async with live_server(settings) as server:
        yield server


async def close_over_http(live: Live, cookie: str, request_id: int, status: str) -> int:
    """Close a request as a logged-in browser would."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(
            f"{live.url}/api/service-requests/{request_id}/close",
            json={"status": status},
            headers=await as_browser(http, live, cookie),
        ) as response,
    ):
        return response.status


async def test_the_hotels_dashboards_and_only_they_hear_of_each_request(
    live: Live, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await create_agent(admin, "bo@b.test", [other_tenant.slug], name="Bo")
    ana_cookie = await login_cookie(live.url, "ana@a.test")
    bo_cookie = await login_cookie(live.url, "bo@b.test")
    async with (
        socket(live.url, "/agent", cookie=ana_cookie) as (ana, ana_events),
        socket(live.url, "/agent", cookie=bo_cookie) as (bo, bo_events),
    ):
        for client, events in ((ana, ana_events), (bo, bo_events)):
            client.on("service_request", events.handler("service_request"), namespace="/agent")
        request = await file_request(live.container, tenant, "taxi", "Taxi at 6am")
        opened = await ana_events.wait_for("service_request")
        assert (opened["id"], opened["status"], opened["details"]) == (
            request.id, "open", "Taxi at 6am"
        )  # fmt: skip
        assert opened["guest_name"] == "Ana García"
        # Filed again for the same message (the job re-ran): no second event. Events reach a
        # socket in order, so a duplicate would arrive before the close's event.
        (message_id,) = await admin.fetch("SELECT id FROM messages WHERE direction = 'inbound'")
        again = await service_requests.open_request(
            live.container.deps, tenant.hotel_id, request.conversation_id,
            kind="taxi", details="Taxi at 6am", message_id=message_id["id"],
        )  # fmt: skip
        assert again.id == request.id
        assert await close_over_http(live, ana_cookie, request.id, "done") == 200
        closed = await ana_events.wait_for("service_request", lambda r: r["status"] == "done")
        assert (closed["id"], closed["closed_by_name"]) == (request.id, "Ana")
        assert [e["status"] for e in ana_events.events["service_request"]] == ["open", "done"]
        # A failed close (twice; another hotel's agent) sends nothing.
        assert await close_over_http(live, ana_cookie, request.id, "cancelled") == 409
        assert await close_over_http(live, bo_cookie, request.id, "cancelled") == 404
        # Hotel B's dashboard heard only of its own hotel's request.
        theirs = await file_request(live.container, other_tenant, "housekeeping", "Room 12")
        await bo_events.wait_for("service_request", lambda r: r["id"] == theirs.id)
        assert [e["id"] for e in bo_events.events["service_request"]] == [theirs.id]
        await asyncio.sleep(0.3)
        assert len(ana_events.events["service_request"]) == 2
