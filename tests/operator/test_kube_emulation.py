"""Proof that the Kubernetes emulation (kube.py, apiserver.py, schema.py) is an API server our three
clients can rely on: the real kubectl, lightkube's AsyncClient, and kopf, both in a thread of this
process and as its own OS process that is SIGKILLed and started again.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import kopf
import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret

from tests.operator import tiny_operator
from tests.operator.apiserver import HOTEL_CRD_PATH, header
from tests.operator.conftest import CHAIN, HOTEL
from tests.operator.kube import (
    HOTELS,
    SECRETS,
    TOKEN,
    KubeEmulation,
    OperatorProcess,
    kopf_command,
    operator_in_thread,
    run_emulation,
)

HOTELS_PATH = f"/apis/hotelchat.io/v1alpha1/namespaces/{CHAIN}/hotels"
HOTEL_PATH = f"{HOTELS_PATH}/{HOTEL}"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TINY_OPERATOR = Path(tiny_operator.__file__)
DIFF_BASE = "kopf.zalando.org/last-handled-configuration"


def write_manifest(path: Path, obj: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def set_field(obj: dict[str, Any], path: tuple[str | int, ...], value: object) -> None:
    """Set (or, with value ..., delete) the field at `path` inside `obj`."""
    target: Any = obj
    for part in path[:-1]:
        target = target[part]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def ready(kube: KubeEmulation, reason: str) -> dict[str, Any] | None:
    """The Hotel when its Ready condition has `reason`, else None."""
    hotel = kube.get(HOTELS, CHAIN, HOTEL)
    conditions = (hotel or {}).get("status", {}).get("conditions", [])
    return hotel if any(c["reason"] == reason for c in conditions) else None


async def watch(kube: KubeEmulation, query: str, count: int) -> AsyncIterator[dict[str, Any]]:
    """The first `count` events of a watch on hotels in the chain (at most 5 s)."""
    timeout = aiohttp.ClientTimeout(total=5)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{kube.url}{HOTELS_PATH}?watch=true&{query}", headers=headers) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        seen = 0
        async for line in response.content:
            if line.strip():
                yield json.loads(line)
                seen += 1
                if seen == count:
                    return


# Discovery and kubectl ------------------------------------------------------------------------


async def test_discovery_serves_hotels_as_the_crd_declares(kube: KubeEmulation) -> None:
    status, groups = await kube.request("GET", "/apis")
    assert status == 200
    assert "hotelchat.io" in {group["name"] for group in groups["groups"]}
    status, listing = await kube.request("GET", "/apis/hotelchat.io/v1alpha1")
    assert status == 200
    assert listing["groupVersion"] == "hotelchat.io/v1alpha1"
    by_name = {resource["name"]: resource for resource in listing["resources"]}
    assert by_name["hotels"] == {
        "name": "hotels",
        "singularName": "hotel",
        "namespaced": True,
        "kind": "Hotel",
        "verbs": [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "shortNames": [],
        "categories": ["hotelchat"],
    }
    assert by_name["hotels/status"]["verbs"] == ["get", "patch", "update"]
    status, core = await kube.request("GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    assert {"namespaces", "secrets", "configmaps", "events"} <= {
        r["name"] for r in core["resources"]
    }
    crd = kube.kubectl(
        "get",
        "crd",
        "hotels.hotelchat.io",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    )
    assert (crd.returncode, crd.stdout) == (0, "True"), crd.stderr


async def test_kubectl_applies_lists_updates_and_deletes_a_hotel(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any], tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "hotel.yaml", sample_hotel)

    created = kube.kubectl("apply", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "hotel.hotelchat.io/lisbon-riverside created"
    hotel = kube.get(HOTELS, chain, HOTEL)
    assert hotel is not None
    assert hotel["metadata"]["generation"] == 1
    assert hotel["spec"]["suspended"] is False  # a schema default
    post = kube.requests(kmock.method.POST, HOTELS)[-1]
    assert post.params == {"fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"}

    # The operator's status, so that the CRD's printer columns have something to print.
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Provisioned",
        "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    webhook = "https://hotelchat.test/webhooks/twilio"
    kube.patch(
        HOTELS,
        chain,
        HOTEL,
        {"status": {"conditions": [condition], "senders": 1, "webhookUrl": webhook}},
        status=True,
    )
    listed = kube.kubectl("get", "hotels", "-n", chain)
    assert listed.returncode == 0, listed.stderr
    header_line, row = listed.stdout.splitlines()
    assert header_line.split() == ["NAME", "READY", "REASON", "SENDERS", "WEBHOOK", "URL", "AGE"]
    assert row.split()[:5] == [HOTEL, "True", "Provisioned", "1", webhook]
    assert row.split()[5].endswith("s")  # Age, formatted by the server: "0s", "1s"
    get = kube.requests(kmock.method.GET, HOTELS)[-1]
    assert "as=Table" in header(get, "accept")
    by_category = kube.kubectl("get", "hotelchat", "-n", chain, "-o", "name")
    assert by_category.stdout.strip() == "hotel.hotelchat.io/lisbon-riverside", by_category.stderr

    sample_hotel["spec"]["displayName"] = "Lisbon Riverside Hotel"
    sample_hotel["spec"]["languages"] = ["pt", "en"]
    write_manifest(manifest, sample_hotel)
    updated = kube.kubectl("apply", "-f", str(manifest))
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.strip() == "hotel.hotelchat.io/lisbon-riverside configured"
    patch = kube.requests(kmock.method.PATCH, HOTELS)[-1]
    assert header(patch, "content-type") == MERGE  # kubectl's choice for custom resources
    assert patch.data["spec"] == {
        "displayName": "Lisbon Riverside Hotel",
        "languages": ["pt", "en"],
    }
    hotel = kube.get(HOTELS, chain, HOTEL)
    assert hotel is not None
    assert hotel["spec"]["displayName"] == "Lisbon Riverside Hotel"
    assert hotel["metadata"]["generation"] == 2
    assert hotel["status"]["webhookUrl"] == webhook  # a write to the object keeps the status
    applied = json.loads(
        hotel["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert applied["spec"]["languages"] == ["pt", "en"]

    deleted = kube.kubectl("delete", "-f", str(manifest))
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith('hotel.hotelchat.io "lisbon-riverside" deleted')
    assert kube.get(HOTELS, chain, HOTEL) is None


async def test_a_crd_applied_with_kubectl_becomes_discoverable(tmp_path: Path) -> None:
    with run_emulation(tmp_path / "kube", crds=[]) as kube:
        missing = kube.kubectl("get", "hotels", "-A")
        assert missing.returncode == 1
        assert 'the server doesn\'t have a resource type "hotels"' in missing.stderr
        applied = kube.kubectl("apply", "-f", str(HOTEL_CRD_PATH))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == (
            "customresourcedefinition.apiextensions.k8s.io/hotels.hotelchat.io created"
        )
        listed = kube.kubectl("get", "hotels", "-A")
        assert (listed.returncode, listed.stderr.strip()) == (0, "No resources found")
        assert kube.kubectl("delete", "-f", str(HOTEL_CRD_PATH)).returncode == 0
        status, _ = await kube.request("GET", "/apis/hotelchat.io/v1alpha1")
        assert status == 404
        assert kube.internal_errors() == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        pytest.param(
            ("whatsapp", "senders", 0, "number"),
            "351210000000",
            'spec.whatsapp.senders[0].number: Invalid value: "351210000000":'
            " spec.whatsapp.senders[0].number in body should match '^\\+[1-9][0-9]{6,14}$'",
            id="number-not-e164",
        ),
        pytest.param(
            ("whatsapp", "senders", 0, "accountSid"),
            "AC0123",
            'spec.whatsapp.senders[0].accountSid: Invalid value: "AC0123":'
            " spec.whatsapp.senders[0].accountSid in body should match '^AC[0-9a-f]{32}$'",
            id="bad-account-sid",
        ),
        pytest.param(
            ("deletionPolicy",),
            "Archive",
            'spec.deletionPolicy: Unsupported value: "Archive":'
            ' supported values: "Retain", "Delete"',
            id="unknown-enum-value",
        ),
    ],
)
async def test_kubectl_apply_refuses_a_malformed_hotel(
    kube: KubeEmulation,
    chain: str,
    sample_hotel: dict[str, Any],
    tmp_path: Path,
    path: tuple[str | int, ...],
    value: object,
    expected: str,
) -> None:
    set_field(sample_hotel["spec"], path, value)
    result = kube.kubectl("apply", "-f", str(write_manifest(tmp_path / "hotel.yaml", sample_hotel)))
    assert result.returncode == 1
    assert result.stderr.strip() == f'The Hotel "lisbon-riverside" is invalid: {expected}'
    assert len(kube.requests(kmock.method.POST, HOTELS)) == 1  # refused by the server
    assert kube.get(HOTELS, chain, HOTEL) is None


async def test_kubectl_apply_refuses_unknown_fields_and_a_changed_slug(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any], tmp_path: Path
) -> None:
    manifest = tmp_path / "hotel.yaml"
    unknown = copy.deepcopy(sample_hotel)
    unknown["spec"]["colour"] = "blue"
    result = kube.kubectl("apply", "-f", str(write_manifest(manifest, unknown)))
    assert result.returncode == 1
    assert 'strict decoding error: unknown field "spec.colour"' in result.stderr
    assert kube.get(HOTELS, chain, HOTEL) is None

    sample_hotel["spec"]["slug"] = "lisbon"
    assert kube.kubectl("apply", "-f", str(write_manifest(manifest, sample_hotel))).returncode == 0
    sample_hotel["spec"]["slug"] = "lisbon-centre"
    result = kube.kubectl("apply", "-f", str(write_manifest(manifest, sample_hotel)))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'The Hotel "lisbon-riverside" is invalid: spec.slug: Invalid value: "string":'
        " slug cannot be changed; create a new Hotel instead"
    )
    hotel = kube.get(HOTELS, chain, HOTEL)
    assert hotel is not None
    assert hotel["spec"]["slug"] == "lisbon"


# Admission --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field", "detail"),
    [
        (("spec", "displayName"), ..., "spec.displayName", "Required value"),
        (
            ("spec", "displayName"),
            "",
            "spec.displayName",
            'Invalid value: "": spec.displayName in body should be at least 1 chars long',
        ),
        (
            ("spec", "displayName"),
            "x" * 201,
            "spec.displayName",
            "Too long: may not be more than 200 bytes",
        ),
        (("spec", "timezone"), "Lisbon", "spec.timezone", "in body should match"),
        (
            ("spec", "languages"),
            [],
            "spec.languages",
            "Invalid value: []: spec.languages in body should have at least 1 items",
        ),
        (("spec", "languages"), ["en", "en"], "spec.languages[1]", 'Duplicate value: "en"'),
        (
            ("spec", "whatsapp", "senders", 0, "number"),
            "+0351",
            "spec.whatsapp.senders[0].number",
            "in body should match",
        ),
        (
            ("spec", "whatsapp", "senders", 0, "authTokenSecretRef", "key"),
            ...,
            "spec.whatsapp.senders[0].authTokenSecretRef.key",
            "Required value",
        ),
        (
            ("spec", "assistant", "contextTokens"),
            100,
            "spec.assistant.contextTokens",
            "Invalid value: 100: spec.assistant.contextTokens in body"
            " should be greater than or equal to 200",
        ),
        (
            ("spec", "assistant", "monthlyBudgetUSD"),
            "200",
            "spec.assistant.monthlyBudgetUSD",
            'Invalid value: "string": spec.assistant.monthlyBudgetUSD in body'
            ' must be of type number: "string"',
        ),
        (
            ("spec", "knowledgeBase", "configMapRef", "key"),
            "kb.txt",
            "spec.knowledgeBase.configMapRef.key",
            "in body should match",
        ),
        (
            ("spec", "agents", 0, "role"),
            "owner",
            "spec.agents[0].role",
            'Unsupported value: "owner": supported values: "agent", "manager"',
        ),
        (("spec", "suspended"), "yes", "spec.suspended", "must be of type boolean"),
        (
            ("metadata", "name"),
            "Lisbon_Riverside",
            "metadata.name",
            "a lowercase RFC 1123 subdomain",
        ),
    ],
)
async def test_admission_refuses_each_violation_with_a_422_and_stores_nothing(
    kube: KubeEmulation,
    chain: str,
    sample_hotel: dict[str, Any],
    path: tuple[str | int, ...],
    value: object,
    field: str,
    detail: str,
) -> None:
    set_field(sample_hotel, path, value)
    status, body = await kube.request("POST", HOTELS_PATH, body=sample_hotel)
    assert status == 422
    name = sample_hotel["metadata"]["name"]
    assert body["kind"] == "Status"
    assert (body["status"], body["reason"], body["code"]) == ("Failure", "Invalid", 422)
    assert body["message"].startswith(f'Hotel.hotelchat.io "{name}" is invalid: {field}: ')
    assert detail in body["message"]
    assert body["details"]["kind"] == "Hotel"
    assert [cause["field"] for cause in body["details"]["causes"]] == [field]
    assert kube.list_objects(HOTELS, chain) == []


async def test_admission_defaults_and_prunes_as_the_api_server_does(
    kube: KubeEmulation, chain: str
) -> None:
    minimal = {
        "apiVersion": "hotelchat.io/v1alpha1",
        "kind": "Hotel",
        "metadata": {"name": "porto", "namespace": chain},
        "spec": {
            "displayName": "Porto",
            "colour": "blue",
            "assistant": {"enabled": True, "temperature": 0.2},
            "agents": [{"email": "rui@example.com", "name": "Rui"}],
        },
        "status": {"senders": 5},
    }
    status, created = await kube.request("POST", HOTELS_PATH, body=minimal)
    assert status == 201, created
    assert created["spec"] == {
        "displayName": "Porto",
        "timezone": "UTC",
        "languages": ["en"],
        "assistant": {"enabled": True},
        "agents": [{"email": "rui@example.com", "name": "Rui", "role": "agent"}],
        "suspended": False,
        "deletionPolicy": "Retain",
    }
    assert "status" not in created  # status is a subresource: a create ignores it

    kopf_state = {"progress": {"provision": {"started": "2026-01-01T00:00:00Z", "retries": 1}}}
    status, patched = await kube.request(
        "PATCH",
        f"{HOTELS_PATH}/porto/status",
        content_type=MERGE,
        body={"status": {"senders": 1, "mood": "happy", "kopf": kopf_state}},
    )
    assert status == 200, patched
    assert patched["status"] == {"senders": 1, "kopf": kopf_state}  # mood pruned, kopf kept

    strict = dict(minimal, metadata={"name": "faro", "namespace": chain})
    status, refused = await kube.request(
        "POST", f"{HOTELS_PATH}?fieldValidation=Strict", body=strict
    )
    assert (status, refused["reason"]) == (400, "BadRequest")
    assert refused["message"] == (
        'Hotel in version "v1alpha1" cannot be handled as a Hotel: strict decoding error:'
        ' unknown field "spec.assistant.temperature", unknown field "spec.colour"'
    )
    assert kube.get(HOTELS, chain, "faro") is None


async def test_status_writes_are_validated_too(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    kube.create(sample_hotel)
    good = {
        "type": "Ready",
        "status": "True",
        "reason": "Provisioned",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    kube.patch(HOTELS, chain, HOTEL, {"status": {"conditions": [good]}}, status=True)
    bad = dict(good, status="Maybe", lastTransitionTime="yesterday")
    del bad["reason"]
    status, body = await kube.request(
        "PATCH", f"{HOTEL_PATH}/status", content_type=MERGE, body={"status": {"conditions": [bad]}}
    )
    assert status == 422
    assert {cause["field"]: cause["message"] for cause in body["details"]["causes"]} == {
        "status.conditions[0].reason": "Required value",
        "status.conditions[0].status": (
            'Unsupported value: "Maybe": supported values: "True", "False", "Unknown"'
        ),
        "status.conditions[0].lastTransitionTime": (
            'Invalid value: "yesterday": status.conditions[0].lastTransitionTime in body'
            ' must be of type date-time: "yesterday"'
        ),
    }
    assert kube.status(chain, HOTEL)["conditions"] == [good]


# Write semantics ------------------------------------------------------------------------------


async def test_writes_keep_resource_versions_and_generations_as_the_api_server_does(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    created = kube.create(sample_hotel)
    meta = created["metadata"]
    uuid.UUID(meta["uid"])
    created_at = datetime.datetime.fromisoformat(meta["creationTimestamp"])
    assert abs(datetime.datetime.now(datetime.UTC) - created_at) < datetime.timedelta(seconds=5)
    assert meta["generation"] == 1

    def rv_and_generation(obj: dict[str, Any]) -> tuple[int, int]:
        return int(obj["metadata"]["resourceVersion"]), obj["metadata"]["generation"]

    rv0, _ = rv_and_generation(created)
    labelled = kube.patch(HOTELS, chain, HOTEL, {"metadata": {"labels": {"tier": "gold"}}})
    assert rv_and_generation(labelled)[0] > rv0
    assert rv_and_generation(labelled)[1] == 1  # metadata changes leave the generation
    statused = kube.patch(HOTELS, chain, HOTEL, {"status": {"senders": 1}}, status=True)
    assert rv_and_generation(statused)[1] == 1  # so do status changes
    respecced = kube.patch(HOTELS, chain, HOTEL, {"spec": {"suspended": True}})
    rv3, generation3 = rv_and_generation(respecced)
    assert generation3 == 2
    again = kube.patch(HOTELS, chain, HOTEL, {"spec": {"suspended": True}})
    assert rv_and_generation(again) == (rv3, 2)  # a no-op write is not a new version
    assert len(kube.history(HOTELS, chain, HOTEL)) == 4
    assert created["metadata"]["uid"] == again["metadata"]["uid"]


async def test_status_is_a_subresource(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    kube.create(sample_hotel)
    kube.patch(HOTELS, chain, HOTEL, {"status": {"senders": 1}}, status=True)
    status, body = await kube.request(
        "PATCH",
        HOTEL_PATH,
        content_type=MERGE,
        body={"spec": {"suspended": True}, "status": {"senders": 7}},
    )
    assert status == 200
    assert (body["spec"]["suspended"], body["status"]["senders"]) == (True, 1)
    status, body = await kube.request(
        "PATCH",
        f"{HOTEL_PATH}/status",
        content_type=MERGE,
        body={"spec": {"suspended": False}, "status": {"senders": 2}},
    )
    assert status == 200
    assert (body["spec"]["suspended"], body["status"]["senders"]) == (True, 2)
    assert body["metadata"]["generation"] == 2


async def test_json_patch_and_optimistic_concurrency(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    created = kube.create(sample_hotel)
    rv = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {
            "op": "add",
            "path": "/metadata/finalizers",
            "value": ["tiny.test.hotelchat.io/cleanup"],
        },
    ]
    status, body = await kube.request("PATCH", HOTEL_PATH, content_type=JSON_PATCH, body=ops)
    assert status == 200, body
    assert body["metadata"]["finalizers"] == ["tiny.test.hotelchat.io/cleanup"]
    status, body = await kube.request("PATCH", HOTEL_PATH, content_type=JSON_PATCH, body=ops)
    assert (status, body["reason"]) == (422, "Invalid")  # the stale test fails, as kopf expects
    status, body = await kube.request(
        "PATCH",
        HOTEL_PATH,
        content_type=MERGE,
        body={"metadata": {"resourceVersion": rv, "labels": {"a": "b"}}},
    )
    assert (status, body["reason"]) == (409, "Conflict")
    current = kube.get(HOTELS, chain, HOTEL)
    assert current is not None
    stale = copy.deepcopy(current)
    stale["metadata"]["resourceVersion"] = rv
    status, body = await kube.request("PUT", HOTEL_PATH, body=stale)
    assert (status, body["reason"]) == (409, "Conflict")
    current["spec"]["displayName"] = "Lisbon"
    status, body = await kube.request("PUT", HOTEL_PATH, body=current)
    assert (status, body["spec"]["displayName"]) == (200, "Lisbon")
    status, body = await kube.request(
        "PATCH", HOTEL_PATH, content_type="application/strategic-merge-patch+json", body={}
    )
    assert status == 415  # as for any custom resource


async def test_finalizers_hold_a_deletion_until_they_are_removed(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    sample_hotel["metadata"]["finalizers"] = ["tiny.test.hotelchat.io/cleanup"]
    kube.create(sample_hotel)
    status, body = await kube.request("DELETE", HOTEL_PATH)
    assert status == 200
    assert body["metadata"]["deletionTimestamp"]
    held = kube.get(HOTELS, chain, HOTEL)
    assert held is not None
    assert held["metadata"]["deletionTimestamp"] == body["metadata"]["deletionTimestamp"]
    status, body = await kube.request(
        "PATCH",
        HOTEL_PATH,
        content_type=MERGE,
        body={"metadata": {"finalizers": ["tiny.test.hotelchat.io/cleanup", "another"]}},
    )
    assert status == 422
    assert "no new finalizers can be added if the object is being deleted" in body["message"]
    kube.patch(HOTELS, chain, HOTEL, {"metadata": {"finalizers": None}})
    assert kube.get(HOTELS, chain, HOTEL) is None
    status, body = await kube.request("GET", HOTEL_PATH)
    assert (status, body["reason"], body["message"]) == (
        404,
        "NotFound",
        'hotels.hotelchat.io "lisbon-riverside" not found',
    )


async def test_watch_streams_every_change_after_a_resource_version(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    since = kube.call(lambda k: k.resource_version)

    async def collect() -> list[dict[str, Any]]:
        return [event async for event in watch(kube, f"resourceVersion={since}", 3)]

    live = asyncio.create_task(collect())
    await asyncio.sleep(0.1)
    kube.create(sample_hotel)
    kube.patch(HOTELS, chain, HOTEL, {"metadata": {"labels": {"tier": "gold"}}})
    kube.delete(HOTELS, chain, HOTEL)
    events = await asyncio.wait_for(live, 5)
    assert [event["type"] for event in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in events]
    assert versions == sorted(versions)

    resumed = [event async for event in watch(kube, f"resourceVersion={versions[0]}", 2)]
    assert [event["type"] for event in resumed] == ["MODIFIED", "DELETED"]  # replayed
    sample_hotel["metadata"]["name"] = "porto"
    kube.create(sample_hotel)
    current = [event async for event in watch(kube, "resourceVersion=0", 1)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in current] == [("ADDED", "porto")]


async def test_deleting_a_namespace_deletes_what_is_in_it(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    sample_hotel["metadata"]["finalizers"] = ["tiny.test.hotelchat.io/cleanup"]
    kube.create(sample_hotel)
    result = kube.kubectl("delete", "namespace", chain, "--wait=false")
    assert result.returncode == 0, result.stderr
    assert kube.get(SECRETS, chain, "lisbon-twilio") is None
    namespace = kube.get("namespaces", None, chain)
    assert namespace is not None
    assert namespace["status"]["phase"] == "Terminating"  # a Hotel's finalizer holds it
    status, body = await kube.request(
        "POST", HOTELS_PATH, body=dict(sample_hotel, metadata={"name": "porto"})
    )
    assert (status, body["reason"]) == (403, "Forbidden")
    kube.patch(HOTELS, chain, HOTEL, {"metadata": {"finalizers": None}})
    assert kube.get("namespaces", None, chain) is None


async def test_a_tests_own_reaction_comes_first_and_the_refused_write_changes_nothing(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any]
) -> None:
    created = kube.create(sample_hotel)
    outage = kmock.KubernetesError(status=503, reason="ServiceUnavailable", message="injected")
    kube.call(lambda k: k[kmock.method.PATCH, HOTELS][:1] << outage)  # the first PATCH only
    status, body = await kube.request(
        "PATCH", HOTEL_PATH, content_type=MERGE, body={"spec": {"suspended": True}}
    )
    assert (status, body["message"]) == (503, "injected")
    assert kube.get(HOTELS, chain, HOTEL) == created
    status, body = await kube.request(
        "PATCH", HOTEL_PATH, content_type=MERGE, body={"spec": {"suspended": True}}
    )
    assert (status, body["spec"]["suspended"]) == (200, True)
    assert len(kube.requests(kmock.method.PATCH, HOTELS)) == 2


# lightkube ------------------------------------------------------------------------------------


async def test_lightkube_reads_and_writes_through_the_kubeconfig(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    hotel = kube.create(sample_hotel)
    client = AsyncClient(config=KubeConfig.from_file(kube.kubeconfig))
    try:
        secret = await client.get(Secret, "lisbon-twilio", namespace=chain)
        assert secret.data is not None
        assert base64.b64decode(secret.data["authToken"]) == b"twilio-token-1"
        configmap = await client.get(ConfigMap, "lisbon-kb", namespace=chain)
        assert configmap.data == {"knowledge.md": "## Parking\nEUR 18 a day.\n"}

        owner = OwnerReference(
            apiVersion="hotelchat.io/v1alpha1",
            kind="Hotel",
            name=HOTEL,
            uid=hotel["metadata"]["uid"],
            controller=True,
            blockOwnerDeletion=True,
        )
        meta = ObjectMeta(name="ana-password", namespace=chain, ownerReferences=[owner])
        created = await client.create(Secret(metadata=meta, stringData={"password": "one-time"}))
        assert created.metadata is not None and created.metadata.ownerReferences is not None
        assert created.metadata.ownerReferences[0].uid == hotel["metadata"]["uid"]
        stored = kube.get(SECRETS, chain, "ana-password")
        assert stored is not None
        assert stored["data"] == {"password": base64.b64encode(b"one-time").decode()}
        assert "stringData" not in stored

        with pytest.raises(ApiError) as missing:
            await client.get(Secret, "lisbon-whatsapp", namespace=chain)
        assert missing.value.status.code == 404
    finally:
        await client.close()

    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    client = AsyncClient(config=KubeConfig.from_env())
    try:
        namespace = await client.get(Namespace, chain)
        assert namespace.metadata is not None
        assert namespace.metadata.annotations == {"hotelchat.io/chain": "Sunrise Hotels"}
        with pytest.raises(ApiError) as missing:
            await client.get(Namespace, "moonset-hotels")
        assert missing.value.status.code == 404
    finally:
        await client.close()
    sent = {
        header(r, "authorization")
        for r in kube.requests()
        if "python-httpx" in header(r, "user-agent")
    }
    assert sent == {f"Bearer {TOKEN}"}


# kopf -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespaces",
    [
        pytest.param((), id="cluster-wide"),
        pytest.param(("sunrise-*",), id="namespaced-by-glob"),  # kopf lists and watches namespaces
    ],
)
async def test_kopf_operator_reconciles_a_hotel_in_process(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any], namespaces: tuple[str, ...]
) -> None:
    registry = tiny_operator.register(kopf.OperatorRegistry())

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kube.connection_info()

    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.StatusProgressStorage()  # status.kopf.progress
    with operator_in_thread(registry, settings=settings, namespaces=namespaces):
        kube.create(sample_hotel)
        hotel = await kube.wait_for(lambda: ready(kube, "Provisioned"), timeout=15, what="Ready")
        status = hotel["status"]
        (condition,) = status["conditions"]
        assert condition == {
            "type": "Ready",
            "status": "True",
            "reason": "Provisioned",
            "message": "Lisbon Riverside is provisioned (attempt 2)",
            "lastTransitionTime": condition["lastTransitionTime"],
            "observedGeneration": 1,
        }
        datetime.datetime.fromisoformat(condition["lastTransitionTime"])
        assert (status["observedGeneration"], status["senders"]) == (1, 1)
        assert hotel["metadata"]["finalizers"] == [tiny_operator.FINALIZER]
        assert DIFF_BASE in hotel["metadata"]["annotations"]
        # The failed first attempt was recorded in status.kopf, through the schema's pruning.
        progress = [
            entry
            for version in kube.history(HOTELS, chain, HOTEL)
            for entry in (
                (version or {}).get("status", {}).get("kopf", {}).get("progress", {})
            ).values()
        ]
        assert any(entry.get("retries") == 1 for entry in progress)
        events = await kube.wait_for(
            lambda: [e for e in kube.events(chain, about=HOTEL) if e["reason"] == "Provisioned"],
            timeout=5,
            what="the Provisioned event",
        )
        assert events[0]["involvedObject"]["uid"] == hotel["metadata"]["uid"]
        assert events[0]["type"] == "Normal"
        status_patches = kube.requests(kmock.method.PATCH, HOTELS, kmock.subresource("status"))
        assert {header(r, "content-type") for r in status_patches} == {MERGE, JSON_PATCH}

        senders = hotel["spec"]["whatsapp"]["senders"]
        second = dict(senders[0], number="+351210000001")
        kube.patch(
            HOTELS,
            chain,
            HOTEL,
            {
                "spec": {
                    "displayName": "Lisbon Riverside Hotel",
                    "whatsapp": {"senders": [*senders, second]},
                }
            },
        )
        hotel = await kube.wait_for(
            lambda: ready(kube, "Reconfigured"), timeout=10, what="the update"
        )
        (updated,) = hotel["status"]["conditions"]
        assert (updated["observedGeneration"], hotel["status"]["observedGeneration"]) == (2, 2)
        assert hotel["status"]["senders"] == 2
        assert updated["lastTransitionTime"] == condition["lastTransitionTime"]  # still True

        def ticks() -> int:
            annotations = (kube.get(HOTELS, chain, HOTEL) or {})["metadata"]["annotations"]
            return int(annotations.get(tiny_operator.TICKS, "0"))

        await kube.wait_for(lambda: ticks() >= 2, timeout=5, what="two timer ticks")
        ticked = kube.get(HOTELS, chain, HOTEL)
        assert ticked is not None
        assert ticked["metadata"]["generation"] == 2  # annotations do not count

        kube.delete(HOTELS, chain, HOTEL)
        await kube.wait_for(
            lambda: kube.get(HOTELS, chain, HOTEL) is None,
            timeout=10,
            what="the finalizer's removal",
        )
        retired = await kube.wait_for(  # kopf posts events from a queue of its own
            lambda: [e for e in kube.events(chain, about=HOTEL) if e["reason"] == "Retired"],
            timeout=5,
            what="the Retired event",
        )
        assert retired[0]["message"] == "the hotel is retired"


@pytest.mark.slow
async def test_kopf_operator_process_picks_up_after_a_sigkill(
    kube: KubeEmulation, chain: str, sample_hotel: dict[str, Any], tmp_path: Path
) -> None:
    command = kopf_command(TINY_OPERATOR)
    with OperatorProcess(command, kube.env, tmp_path / "operator-1.log") as first:
        kube.create(sample_hotel)
        await kube.wait_for(
            lambda: ready(kube, "Provisioned"), timeout=20, what=f"Ready; log:\n{first.output}"
        )
        assert first.kill() == -signal.SIGKILL

    hotel = kube.get(HOTELS, chain, HOTEL)
    assert hotel is not None
    assert DIFF_BASE in hotel["metadata"]["annotations"]
    # The failed first attempt was recorded in an annotation (kopf's default progress storage).
    assert any(
        "kopf.zalando.org/" in key and "retries" in value
        for version in kube.history(HOTELS, chain, HOTEL)
        for key, value in (version or {}).get("metadata", {}).get("annotations", {}).items()
    )
    kube.patch(HOTELS, chain, HOTEL, {"spec": {"displayName": "Lisbon Riverside Hotel"}})

    with OperatorProcess(command, kube.env, tmp_path / "operator-2.log") as second:
        hotel = await kube.wait_for(
            lambda: ready(kube, "Reconfigured"),
            timeout=20,
            what=f"the update; log:\n{second.output}",
        )
        assert hotel["status"]["observedGeneration"] == 2
    kopf_requests = [r for r in kube.requests() if header(r, "user-agent").startswith("kopf/")]
    assert kopf_requests
    assert {header(r, "authorization") for r in kopf_requests} == {f"Bearer {TOKEN}"}
