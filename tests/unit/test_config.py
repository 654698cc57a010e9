"""Settings: read once from the environment, secrets masked, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from hotelchat.config import Settings, redact_url


def test_secrets_are_masked_in_repr() -> None:
    settings = Settings(
        database_url="postgresql://app:hunter2hunter2@db/hotelchat",
        openai_api_key="sk-very-secret",
        secret_key="k" * 40,
    )
    text = repr(settings) + str(settings.model_dump())
    assert "hunter2" not in text
    assert "sk-very-secret" not in text
    assert "k" * 40 not in text


def test_malformed_values_fail_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_url="mysql://root:pw-in-url@db/x")
    assert "pw-in-url" not in str(caught.value)
    with pytest.raises(ValidationError, match="SECRET_KEY must be at least 32"):
        Settings(secret_key="short")
    with pytest.raises(ValidationError):
        Settings(database_pool_min_size=20, database_pool_max_size=5)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_the_command_line_names_a_bad_variable_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hotelchat", "migrate"],
        env={"DATABASE_URL": "nope://x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_the_readme_documents_every_variable() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias if isinstance(field.validation_alias, str) else name
        assert f"| `{variable.upper()}` |" in readme, variable


def test_an_attempt_never_waits_longer_than_the_whole_call() -> None:
    assert Settings().openai_attempt_timeout() == 15.0
    short = Settings(openai_timeout_seconds=5.0)
    assert short.openai_attempt_timeout() == 5.0
    patient = Settings(openai_timeout_seconds=120.0, openai_read_timeout_seconds=60.0)
    assert patient.openai_attempt_timeout() == 60.0


EMBED_IN_A_FRESH_PROCESS = """
import asyncio, os, sys
from hotelchat import bootstrap
from hotelchat.config import Settings
embeddings = bootstrap._embeddings(Settings(embeddings_threads=int(sys.argv[1])))
asyncio.run(embeddings.query("Is there parking?"))
print(os.environ.get("OMP_NUM_THREADS"), len(os.listdir("/proc/self/task")))
"""


def _embedding_threads(threads: int) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", EMBED_IN_A_FRESH_PROCESS, str(threads)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    omp, tasks = result.stdout.split()
    return omp, int(tasks)


def test_the_in_process_embedding_runs_on_the_threads_it_is_given() -> None:
    assert Settings().embeddings_threads == 1
    one, three = _embedding_threads(1), _embedding_threads(3)
    assert one[0] == "1" and three[0] == "3"
    assert three[1] == one[1] + 2  # OpenMP's extra threads beside the calling one
