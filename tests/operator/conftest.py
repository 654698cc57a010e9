"""Fixtures for the emulation's own tests: the chain's namespace and the objects the sample Hotel
refers to. The `kube` fixture itself (a fresh Kubernetes API emulation for every test, kube.py,
with the Hotel CRD installed) is in tests/conftest.py, for the end-to-end tests too.

The emulation is per test, not per session: it starts in a few milliseconds, and a fresh server
leaves no watch stream, object or reaction of an earlier test behind. A test fails at teardown
when the emulation itself raised something other than an API error (a bug in it, not in the
code under test).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.operator.kube import KubeEmulation

CHAIN = "sunrise-hotels"
HOTEL = "lisbon-riverside"
SAMPLE_HOTEL_YAML = """\
apiVersion: hotelchat.io/v1alpha1
kind: Hotel
metadata: {name: lisbon-riverside, namespace: sunrise-hotels}
spec:
  displayName: Lisbon Riverside
  timezone: Europe/Lisbon
  languages: [en, pt]
  whatsapp:
    senders:
      - number: "+351210000000"
        accountSid: AC0123456789abcdef0123456789abcdef
        authTokenSecretRef: {name: lisbon-twilio, key: authToken}
  assistant: {enabled: true, model: gpt-4o-mini, monthlyBudgetUSD: 200, contextTokens: 3000}
  knowledgeBase: {configMapRef: {name: lisbon-kb, key: knowledge.md}}
  agents:
    - {email: ana@example.com, name: Ana, role: manager}
  deletionPolicy: Retain
"""
_SAMPLE: dict[str, Any] = yaml.safe_load(SAMPLE_HOTEL_YAML)


@pytest.fixture
def chain(kube: KubeEmulation) -> str:
    """The chain's namespace, with the Secret and ConfigMap the sample Hotel names."""
    kube.create_namespace(CHAIN, annotations={"hotelchat.io/chain": "Sunrise Hotels"})
    kube.create_secret(CHAIN, "lisbon-twilio", {"authToken": "twilio-token-1"})
    kube.create_configmap(CHAIN, "lisbon-kb", {"knowledge.md": "## Parking\nEUR 18 a day.\n"})
    return CHAIN


@pytest.fixture
def sample_hotel() -> dict[str, Any]:
    """The sample Hotel manifest (a fresh copy to change)."""
    return copy.deepcopy(_SAMPLE)
