"""The operator's pure parts: a `Hotel` object read into what provisioning needs, its
conditions merged as the Kubernetes API conventions say, and the retry backoff."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hotelchat.domain.errors import InvalidInput
from hotelchat.domain.tenants import AgentSpec, AssistantSpec, agent_secret_name
from hotelchat.entrypoints.operator.handlers import backoff
from hotelchat.entrypoints.operator.resource import (
    AGENTS_SYNCED,
    PROVISIONED,
    READY,
    SENDERS_ROUTED,
    Condition,
    Outcome,
    SecretRef,
    merge_conditions,
    read_hotel,
    summary,
    transitions,
    webhook_url,
)

BODY: dict[str, Any] = {
    "apiVersion": "hotelchat.io/v1alpha1",
    "kind": "Hotel",
    "metadata": {
        "name": "lisbon-riverside",
        "namespace": "sunrise-hotels",
        "uid": "u-1",
        "generation": 3,
    },
    "spec": {
        "displayName": "Lisbon Riverside",
        "timezone": "Europe/Lisbon",
        "languages": ["en", "pt"],
        "whatsapp": {
            "senders": [
                {
                    "number": "+351210000000",
                    "accountSid": "AC0123456789abcdef0123456789abcdef",
                    "authTokenSecretRef": {"name": "lisbon-twilio", "key": "authToken"},
                }
            ]
        },
        "assistant": {
            "enabled": True,
            "model": "gpt-4o-mini",
            "monthlyBudgetUSD": 200,
            "contextTokens": 3000,
        },
        "knowledgeBase": {"configMapRef": {"name": "lisbon-kb", "key": "knowledge.md"}},
        "agents": [{"email": "ana@example.com", "name": "Ana", "role": "manager"}],
        "deletionPolicy": "Delete",
    },
}


def body(**spec: Any) -> dict[str, Any]:
    changed = copy.deepcopy(BODY)
    changed["spec"].update(spec)
    return changed


def test_a_hotel_object_is_read_into_what_provisioning_needs() -> None:
    hotel = read_hotel(BODY)
    assert (hotel.slug, hotel.namespace, hotel.generation) == (
        "lisbon-riverside",
        "sunrise-hotels",
        3,
    )
    assert hotel.senders[0].token == SecretRef("lisbon-twilio", "authToken")
    assert hotel.knowledge == SecretRef("lisbon-kb", "knowledge.md")
    assert hotel.assistant == AssistantSpec(True, "gpt-4o-mini", 200.0, 3000)
    assert hotel.agents == (AgentSpec("ana@example.com", "Ana", "manager"),)
    assert (hotel.suspended, hotel.deletion_policy, hotel.deleting) == (False, "Delete", False)
    spec = hotel.hotel_spec("Sunrise Hotels")
    assert (spec.chain_slug, spec.default_language, spec.owner) == (
        "sunrise-hotels",
        "en",
        hotel.owner,
    )
    assert hotel.owner.label == "sunrise-hotels/lisbon-riverside"


def test_left_out_fields_take_the_defaults_and_leave_the_assistant_alone() -> None:
    bare = {"metadata": BODY["metadata"], "spec": {"displayName": "X"}}
    hotel = read_hotel(bare)
    assert (hotel.timezone, hotel.languages, hotel.senders, hotel.knowledge) == (
        "UTC",
        ("en",),
        (),
        None,
    )
    assert hotel.assistant == AssistantSpec()
    assert hotel.deletion_policy == "Retain"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"slug": "Not_A_Slug"}, "not a valid name"),
        ({"timezone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({"displayName": "  "}, "name has 1 to 200"),
        (
            {"whatsapp": {"senders": [{"number": "+351210000000", "accountSid": "AC" + "0" * 32}]}},
            "authTokenSecretRef needs a name and a key",
        ),
        ({"knowledgeBase": {"configMapRef": {"name": "kb"}}}, "configMapRef needs a name"),
    ],
)
def test_what_the_schema_cannot_refuse_is_refused_here(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_hotel(body(**spec))


def test_a_long_metadata_name_needs_a_slug() -> None:
    long = copy.deepcopy(BODY)
    long["metadata"]["name"] = "lisbon." + "x" * 70
    with pytest.raises(InvalidInput, match="not a valid name"):
        read_hotel(long)
    long["spec"]["slug"] = "lisbon"
    assert read_hotel(long).slug == "lisbon"


def test_ready_is_the_first_part_that_is_not() -> None:
    good = Condition(PROVISIONED, "True", "HotelProvisioned", "ok")
    bad = Condition(SENDERS_ROUTED, "False", "SecretNotFound", "Secret x/y does not exist")
    assert summary([good, bad], suspended=False) == Condition(
        READY, "False", "SecretNotFound", "Secret x/y does not exist"
    )
    assert summary([good], suspended=False).status == "True"
    assert summary([good], suspended=True).reason == "Suspended"
    with pytest.raises(ValueError, match="CamelCase"):
        Condition(READY, "True", "not camel", "x")


def test_conditions_keep_their_transition_time_while_their_status_holds() -> None:
    first = merge_conditions(
        None, [Condition(READY, "False", "SecretNotFound", "m")], generation=1, now="T1"
    )
    assert first == [
        {
            "type": READY,
            "status": "False",
            "reason": "SecretNotFound",
            "message": "m",
            "lastTransitionTime": "T1",
            "observedGeneration": 1,
        }
    ]
    foreign = {
        "type": "Custom",
        "status": "True",
        "reason": "X",
        "message": "",
        "lastTransitionTime": "T0",
    }
    same = merge_conditions(
        [*first, foreign], [Condition(READY, "False", "NumberTaken", "n")], generation=2, now="T2"
    )
    assert same[0]["lastTransitionTime"] == "T1"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("NumberTaken", 2)
    assert same[1] == foreign, "conditions of other types are kept untouched"
    flipped = merge_conditions(
        same, [Condition(READY, "True", "Reconciled", "")], generation=2, now="T3"
    )
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_only_changed_conditions_are_worth_an_event() -> None:
    current = merge_conditions(
        None, [Condition(READY, "True", "Reconciled", "m")], generation=1, now="T"
    )
    assert transitions(current, [Condition(READY, "True", "Reconciled", "other text")]) == []
    changed = Condition(READY, "False", "Suspended", "s")
    assert transitions(current, [changed]) == [changed]


def test_status_fields_keep_listing_agent_secrets_while_the_agents_stay() -> None:
    hotel = read_hotel(BODY)
    kept = agent_secret_name(hotel.name, "ana@example.com")
    gone = agent_secret_name(hotel.name, "left@example.com")
    outcome = Outcome(conditions=[Condition(AGENTS_SYNCED, "True", "Synced", "")], hotel_id=42)
    fields = outcome.status_fields(
        hotel, "https://chat.example.com/", {"agentSecrets": [kept, gone]}
    )
    assert fields == {
        "observedGeneration": 3,
        "slug": "lisbon-riverside",
        "hotelId": 42,
        "senders": 0,
        "webhookUrl": "https://chat.example.com/webhooks/twilio/whatsapp",
        "agentSecrets": [kept],
    }
    assert webhook_url("https://a.b/") == "https://a.b/webhooks/twilio/whatsapp"


def test_agent_secret_names_are_dns_names_stable_per_agent() -> None:
    name = agent_secret_name("h" * 253, "Ana@Example.com")
    assert len(name) <= 253
    assert name == agent_secret_name("h" * 253, "ana@example.com")
    assert name != agent_secret_name("h" * 253, "bo@example.com")


def test_retries_back_off_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
