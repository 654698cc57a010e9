"""Integration tests: services and the web app in-process, on real PostgreSQL and Redis."""

import pytest


@pytest.fixture(autouse=True)
def _start_empty(empty_database: None) -> None:
    """Every test starts with empty tables and an empty Redis."""
