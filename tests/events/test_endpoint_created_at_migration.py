"""`events` 0003 (`WebhookEndpoint.created_at` becomes `CommitStampField`) is state only, as its
docstring and docs/decisions/commit-horizon.md say: no SQL on PostgreSQL nor on the embedded
default, SQLite (review r20g). A plain `AlterField` of the field's default and `editable` was a
no-op on PostgreSQL but made SQLite's schema editor rebuild the whole table (create a copy, copy
every row, drop, rename, re-index) on upgrade."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import ConnectionHandler

pytestmark = [pytest.mark.django_db]

MIGRATION = ("events", "0003_webhookendpoint_created_at_commit_stamp")


def _statements(conn) -> list[str]:
    executor = MigrationExecutor(conn)
    sql = executor.loader.collect_sql([(executor.loader.graph.nodes[MIGRATION], False)])
    return [s for s in sql if not s.startswith("--") and s.strip().upper() not in ("BEGIN;", "COMMIT;")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_commit_stamp_migration_runs_no_sql(backend):
    if backend == "sqlite":
        conn = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})["default"]
    else:  # the test database (a SQLite one is in its transaction: the sqlite case covers it)
        if connection.vendor != "postgresql":
            pytest.skip("PostgreSQL: the test database")
        conn = connection
    try:
        assert _statements(conn) == []
    finally:
        if conn is not connection:
            conn.close()
