"""Running the real `hotelchat operator` against the Kubernetes emulation and the test session's
PostgreSQL and Redis, and reading what it did: shared by the operator's tests and the end-to-end
test that gets a guest answered by a hotel made from a `Hotel` resource."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hotelchat.adapters.embedded import free_port
from tests.conftest import ENCRYPTION_KEY, Backing
from tests.operator.kube import HOTELS, KubeEmulation, OperatorProcess

CHAIN = "sunrise-hotels"
CHAIN_NAME = "Sunrise Hotels"
HOTEL = "lisbon-riverside"
NUMBER = "+351210000000"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "lisbon-twilio-token-" + "1" * 12
KNOWLEDGE = (
    "## Parking\nUnderground parking costs EUR 18 per day.\n\n"
    "## Breakfast\nBreakfast is served from 7:00 to 10:30 on the terrace.\n"
)
PUBLIC_URL = "https://chat.example.test"
RESYNC_SECONDS = 2.0
# The promise: applied, and serving within 10 s.
READY_SECONDS = 10.0

SAMPLE: dict[str, Any] = yaml.safe_load(
    f"""
apiVersion: hotelchat.io/v1alpha1
kind: Hotel
metadata: {{name: {HOTEL}, namespace: {CHAIN}}}
spec:
  displayName: Lisbon Riverside
  timezone: Europe/Lisbon
  languages: [en, pt]
  whatsapp:
    senders:
      - number: "{NUMBER}"
        accountSid: {ACCOUNT_SID}
        authTokenSecretRef: {{name: lisbon-twilio, key: authToken}}
  assistant: {{enabled: true, model: gpt-4o-mini, monthlyBudgetUSD: 200, contextTokens: 3000}}
  knowledgeBase: {{configMapRef: {{name: lisbon-kb, key: knowledge.md}}}}
  agents:
    - {{email: ana@example.com, name: Ana, role: manager}}
  deletionPolicy: Retain
"""
)


def sample(**spec: Any) -> dict[str, Any]:
    """The sample Hotel, with `spec` fields replaced."""
    hotel = copy.deepcopy(SAMPLE)
    hotel["spec"].update(spec)
    return hotel


def arrange_chain(kube: KubeEmulation, namespace: str = CHAIN, *, secret: bool = True) -> None:
    """The chain's namespace (with its display name), the Twilio Secret and the knowledge base
    the sample Hotel names."""
    kube.create_namespace(namespace, annotations={"hotelchat.io/chain-name": CHAIN_NAME})
    if secret:
        kube.create_secret(namespace, "lisbon-twilio", {"authToken": TOKEN})
    kube.create_configmap(namespace, "lisbon-kb", {"knowledge.md": KNOWLEDGE})


def write_manifest(path: Path, obj: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def condition(kube: KubeEmulation, kind: str, name: str = HOTEL, namespace: str = CHAIN) -> Any:
    """The Hotel's condition of type `kind` as a dict, or None."""
    for found in kube.status(namespace, name).get("conditions") or []:
        if found.get("type") == kind:
            return found
    return None


def reason_of(kube: KubeEmulation, kind: str, name: str = HOTEL, namespace: str = CHAIN) -> str:
    """`status/reason` of the condition, e.g. `True/Reconciled`; `-` when there is none."""
    found = condition(kube, kind, name, namespace)
    return "-" if found is None else f"{found['status']}/{found['reason']}"


async def wait_reason(
    kube: KubeEmulation,
    kind: str,
    expected: str,
    *,
    name: str = HOTEL,
    namespace: str = CHAIN,
    timeout: float = READY_SECONDS,
) -> dict[str, Any]:
    """Wait until the Hotel's `kind` condition is `expected` (`status/reason`); returns it."""

    def now() -> str:
        return reason_of(kube, kind, name, namespace)

    try:
        await kube.wait_for(lambda: now() == expected, timeout=timeout, what="the condition")
    except AssertionError:
        raise AssertionError(
            f"{namespace}/{name} {kind} is {now()} after {timeout} s, not {expected}: "
            f"{condition(kube, kind, name, namespace)}"
        ) from None
    found = condition(kube, kind, name, namespace)
    assert found is not None
    return dict(found)


def hotel_exists(kube: KubeEmulation, name: str = HOTEL, namespace: str = CHAIN) -> bool:
    return kube.get(HOTELS, namespace, name) is not None


async def delete_hotel(
    kube: KubeEmulation, name: str = HOTEL, namespace: str = CHAIN, *, timeout: float = 30.0
) -> None:
    """`kubectl delete hotel`, then wait until the finalizer lets the object go. kubectl's own
    wait (a watch) is not used: once, under load, it missed a deletion the emulation had made."""
    done = kube.kubectl("delete", "hotel", name, "-n", namespace, "--wait=false")
    assert done.returncode == 0, done.stderr
    await kube.wait_for(
        lambda: not hotel_exists(kube, name, namespace),
        timeout=timeout,
        what=f"Hotel {namespace}/{name} to be deleted",
    )


class Operators:
    """Starts `hotelchat operator` processes; every one is SIGKILLed at the end of the test and
    its log shown if the test failed."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env, self.directory = env, directory
        self.started: list[OperatorProcess] = []

    def start(self, **env: str) -> OperatorProcess:
        log = self.directory / f"operator-{len(self.started)}.log"
        process = OperatorProcess(
            [sys.executable, "-m", "hotelchat", "operator"], {**self.env, **env}, log
        )
        self.started.append(process.start())
        return process

    def output(self) -> str:
        return "\n".join(p.output for p in self.started)

    def stop_all(self) -> None:
        for process in self.started:
            process.kill()


def operator_env(backing: Backing, kube: KubeEmulation) -> dict[str, str]:
    """What the operator's Deployment gives it, pointed at the test's servers."""
    return {
        **kube.env,
        "DATABASE_OPERATOR_URL": backing.operator_dsn,
        "REDIS_URL": backing.redis_url,
        "ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "PUBLIC_BASE_URL": PUBLIC_URL,
        "OPERATOR_HOST": "127.0.0.1",
        "OPERATOR_HEALTH_PORT": str(free_port()),
        "OPERATOR_METRICS_PORT": str(free_port()),
        "OPERATOR_RESYNC_SECONDS": str(RESYNC_SECONDS),
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def operators(backing: Backing, kube: KubeEmulation, tmp_path: Path) -> Iterator[Operators]:
    running = Operators(operator_env(backing, kube), tmp_path)
    yield running
    running.stop_all()
    print(running.output()[-6000:])
