"""The chart's commands and environments, run as real processes: for the production values, the
migration, the init containers, the web and the worker get exactly the argv and environment their
containers would (Secrets from fake values holding the test session's servers), on the test
session's PostgreSQL and Redis, and each does its job: the migration and every init container's
`wait-for-schema` exit 0, the web answers /readyz with 200, the worker its liveness probe, and
a guest's signed WhatsApp webhook to the web is answered by the worker (through the Twilio and
OpenAI emulators, which the chart's own `config` points the processes at).

Every process runs from the built image (tests/chart/launch.py, ImageLauncher); only bind
addresses and ports change for the shared host network (`bind_overrides`). The operator, which
in its pod reaches the API server through its ServiceAccount, is given the Kubernetes API
emulation of the operator's tests through KUBECONFIG instead (kopf and lightkube fall back to it
when there is no in-cluster account), and reconciles a Hotel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.chart.launch import Launcher, Running, bind_overrides
from tests.chart.rendering import CHART, load_values, merged, render
from tests.chart.workloads import ContainerProcess, Secrets, container_processes, the_process
from tests.conftest import ENCRYPTION_KEY, Backing, create_tenant
from tests.e2e.processes import wait_until
from tests.helpers import GUEST, post_webhook
from tests.image.conftest import image_timeout
from tests.operator.kube import KubeEmulation
from tests.operator.operator_run import arrange_chain, sample, wait_reason, write_manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_database"), image_timeout(300)]

METRICS_TOKEN = "m" * 32


def fake_secrets(backing: Backing) -> Secrets:
    """The Secrets ci/production-values.yaml names, holding the test session's servers and its
    encryption key (the tokens in its database are encrypted with it)."""
    return {
        "hotelchat-database-app": {"DATABASE_URL": backing.app_dsn},
        "hotelchat-database-admin": {"DATABASE_ADMIN_URL": backing.admin_dsn},
        "hotelchat-database-operator": {"DATABASE_OPERATOR_URL": backing.operator_dsn},
        "hotelchat-redis": {"REDIS_URL": backing.redis_url},
        "hotelchat-app": {"SECRET_KEY": "k" * 40, "ENCRYPTION_KEYS": ENCRYPTION_KEY},
        "hotelchat-openai": {"OPENAI_API_KEY": "sk-test-" + "o" * 24},
        "hotelchat-metrics": {"METRICS_TOKEN": METRICS_TOKEN},
    }


async def status(url: str, headers: dict[str, str] | None = None) -> int | None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
            http.get(url, headers=headers) as response,
        ):
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def wait_for(process: Running, url: str, timeout: float) -> None:
    """Until GET `url` answers 200; fails early, with the output, if `process` exits."""

    async def ready() -> bool:
        if process.exited(0) is not None:
            pytest.fail(f"{process.name} exited:\n{process.output()[-3000:]}")
        return await status(url) == 200

    await wait_until(ready, timeout, f"{process.name} at {url}")


def start(launcher: Launcher, process: ContainerProcess) -> tuple[Running, dict[str, int]]:
    run = bind_overrides(process)
    return launcher(process.component, list(process.argv), run.env), run.ports


async def test_rendered_commands_run_and_answer_a_guest(
    backing: Backing,
    launcher: Launcher,
    kube: KubeEmulation,
    tmp_path: Path,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:
    # The production values, pointed at the loopback emulators through the chart's own `config`.
    emulators = {
        "config": {
            "TWILIO_API_BASE_URL": twilio_emulator.url,
            "OPENAI_BASE_URL": openai_emulator.url + "/v1",
        }
    }
    values = merged(load_values(CHART / "ci" / "production-values.yaml"), emulators)
    rendering = render(values)
    assert backing.operator_dsn, "the session's PostgreSQL has an operator role"
    processes = container_processes(rendering, fake_secrets(backing))

    # Every workload and init container is there, with the command the image must provide.
    commands = {(p.component, p.init): p.args for p in processes}
    assert commands == {
        ("migrations", False): ("migrate",),
        ("web", False): ("serve",),
        ("worker", False): ("worker",),
        ("operator", False): ("operator",),
        ("web", True): ("wait-for-schema", "--timeout", "600"),
        ("worker", True): ("wait-for-schema", "--timeout", "600"),
        ("operator", True): ("wait-for-schema", "--timeout", "600"),
    }
    # The operator's pod has no app-role URL: its init container reads the operator's own.
    assert the_process(processes, "operator").env["DATABASE_OPERATOR_URL"] == backing.operator_dsn
    assert the_process(processes, "operator", init=True).env["DATABASE_URL"] == backing.operator_dsn
    assert the_process(processes, "web", init=True).env["DATABASE_URL"] == backing.app_dsn

    # The migration Job first, as the init containers wait for it.
    migrate, _ = start(launcher, the_process(processes, "migrations"))
    assert await asyncio.to_thread(migrate.exited, 120) == 0, migrate.output()[-3000:]
    # Then every pod's init container finds the schema at its revision and lets the pod start.
    for component in ("web", "worker", "operator"):
        init, _ = start(launcher, the_process(processes, component, init=True))
        assert await asyncio.to_thread(init.exited, 60) == 0, init.output()[-3000:]

    web_process = the_process(processes, "web")
    assert web_process.env["WEB_WORKERS"] == "2" and "PROMETHEUS_MULTIPROC_DIR" in web_process.env
    web, web_ports = start(launcher, web_process)
    worker, worker_ports = start(launcher, the_process(processes, "worker"))

    web_url = f"http://127.0.0.1:{web_ports['PORT']}"
    await wait_for(web, web_url + "/readyz", timeout=120)
    assert await status(web_url + "/healthz") == 200
    # METRICS_TOKEN came through its Secret: /metrics wants it.
    assert await status(web_url + "/metrics") == 401
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert await status(web_url + "/metrics", bearer) == 200

    worker_url = f"http://127.0.0.1:{worker_ports['WORKER_METRICS_PORT']}"
    await wait_for(worker, worker_url + "/healthz", timeout=120)
    assert await status(worker_url + "/metrics") == 200

    # A guest's WhatsApp message, signed for the public URL as Twilio signs it, answered.
    tenant = await create_tenant(admin)
    await post_webhook(web_url, tenant, "Is there parking?", signed_for=values["publicBaseUrl"])
    await wait_until(twilio_emulator.sent, 60, "the reply at Twilio")
    (sent,) = twilio_emulator.sent()
    assert sent.to == f"whatsapp:{GUEST}"
    assert "EUR 18" in sent.body

    operator_process = the_process(processes, "operator")
    run = bind_overrides(operator_process)
    operator = launcher(
        "operator", list(operator_process.argv), {**run.env, "KUBECONFIG": str(kube.kubeconfig)}
    )
    operator_url = f"http://127.0.0.1:{run.ports['OPERATOR_HEALTH_PORT']}"
    await wait_for(operator, operator_url + "/healthz", timeout=120)
    metrics_url = f"http://127.0.0.1:{run.ports['OPERATOR_METRICS_PORT']}/metrics"
    assert await status(metrics_url) == 200
    arrange_chain(kube)
    applied = kube.kubectl("apply", "-f", str(write_manifest(tmp_path / "hotel.yaml", sample())))
    assert applied.returncode == 0, applied.stderr
    await wait_reason(kube, "Ready", "True/Reconciled", timeout=30)
