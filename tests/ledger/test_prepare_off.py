"""Review 14c: the ledger's direct call (engine._execute_lean) and `DB_PREPARE_THRESHOLD=off`."""

import pytest
from django.db import connection

from ledger import engine, services
from ledger.types import transfer_lines
from tests.ledger.conftest import make_account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL"),
]


def test_prepare_threshold_off_leaves_no_prepared_statement_on_the_session(owner, now):
    """With prepared statements off, a posting must not leave a named prepared statement behind.

    docs/deploy.md and docs/decisions/server-side-binding.md give `DB_PREPARE_THRESHOLD=off` as the
    setting for "a pooler that cannot keep prepared statements (PgBouncer in transaction mode before
    1.21, or without max_prepared_statements)" (payera/settings/base.py). psycopg then prepares
    nothing, but ledger.engine._execute_lean still prepares `ledger_post_one_v1` on the server
    session (`pgconn.prepare`) and runs it by name on every later posting. Behind such a pooler the
    next transaction lands on another server connection, where that statement does not exist
    (26000): inside the caller's transaction — where payments post — the error is raised and the
    payment's transaction is aborted; in autocommit the one retry may land elsewhere again.
    Expected: with `prepare_threshold` None the posting goes through an unnamed statement (e.g.
    psycopg's cursor), and no `ledger_post_one_v1` exists on the session. Suspected:
    ledger/engine.py `_direct_ok` / `_execute_lean` (ignore the connection's prepare_threshold)."""
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    connection.ensure_connection()
    connection.connection.prepare_threshold = None  # what DB_PREPARE_THRESHOLD=off configures
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what the session prepared before (the fixtures' queries)
    before = engine.stats["direct"]
    for n in range(3):
        services.journal_post(reference=f"{owner}:{n}", lines=transfer_lines(debit=a, credit=b, amount=10),
                              occurred_at=now)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert prepared == [], (
        f"prepared statements on the session with DB_PREPARE_THRESHOLD=off: {prepared}"
        f" ({engine.stats['direct'] - before} postings called it by name)"
    )
