"""Run a multi-statement SQL script inside the current migration's transaction.

SQLAlchemy's asyncpg dialect prepares every statement, and PostgreSQL refuses several commands in
one prepared statement; asyncpg's own `execute` without arguments uses the simple query protocol,
which accepts a whole script (function bodies with `;` included).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.util import await_only


def run_sql(script: str) -> None:
    """Execute `script` on the migration's connection, inside its transaction."""
    bind = op.get_bind()
    # A first statement through SQLAlchemy makes the dialect open the migration's transaction, so
    # the script below runs inside it and rolls back with it.
    bind.execute(sa.text("SELECT 1"))
    driver: Any = bind.connection.driver_connection
    await_only(driver.execute(script))
