"""Django's PostgreSQL connections run READ COMMITTED whatever the server's, database's or role's
`default_transaction_isolation` says (docs/decisions/read-committed.md): the code relies on it
(select_for_update re-reads the row committed meanwhile, INSERT ... ON CONFLICT retries and the
PSP webhook inbox read a row another transaction just committed). Without `isolation_level` in
OPTIONS, Django leaves the server's default in force."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


@pytest.fixture
def repeatable_read_by_default():
    """The test database's default for new sessions set to REPEATABLE READ (as a DBA's ALTER
    DATABASE, ALTER ROLE or postgresql.conf gives it); reset afterwards."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation TO 'repeatable read'")
    connection.close()  # the setting applies to new sessions
    try:
        yield
    finally:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET default_transaction_isolation')
        connection.close()


def _isolation() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW transaction_isolation")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_is_read_committed_when_the_server_default_is_repeatable_read(repeatable_read_by_default):
    with connection.cursor() as cursor:
        cursor.execute("SHOW default_transaction_isolation")
        assert cursor.fetchone()[0] == "repeatable read"  # the new session did get the server's default
    with transaction.atomic():
        assert _isolation() == "read committed"
    # a new connection, as a web worker or Celery task opens one
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SHOW default_transaction_isolation")
            assert cursor.fetchone()[0] == "repeatable read"
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "read committed"
        other.rollback()
    finally:
        other.close()


def test_the_settings_pin_read_committed():
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
    )
    for module in ("payera.settings.base", "payera.settings.test"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": module,
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
            },
        )
        options = json.loads(out.stdout.strip().splitlines()[-1])
        assert options["isolation_level"] == 2, module  # psycopg.IsolationLevel.READ_COMMITTED
