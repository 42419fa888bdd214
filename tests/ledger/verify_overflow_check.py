"""`ledger_verify` on entries whose sums pass the bigint range (session 18, h18e).

What was wrong: the checks add and negate amounts in bigint arithmetic. Entries written past the
posting functions (a raw writer, a restore gone wrong) whose replay passes +-2^63 made PostgreSQL
raise `bigint out of range` and SQLite `integer overflow` from the replay (`previous + amount`), the
reversal check (`amount * -1` of -2^63), the projection and journal sums (SQLite's sum()) and
`abs(-2^63)` (SQLite): `manage.py ledger_verify` died with a raw traceback instead of its report,
so a monitor reading its JSON got none, and finance no offending id; `ledger_rebuild`, the
runbook's next step, failed the same way. Where SQLite did not raise, an
overflowing `+` became a float: a replay of -2^63 - 1 rounded to -2^63 and matched a stored
balance_after of -2^63, and the broken entry was reported clean. Now every check answers: the
offending ids are listed and the command exits 1; the rebuild freezes the accounts whose replay
does not fit a bigint projection and rebuilds the others.

Shared by tests/ledger/test_verify_overflow.py (PostgreSQL) and tests/ledger/sqlite_seal_check.py
(SQLite): raw SQL as each engine's triggers let a writer through (on SQLite: entries first, then the
journal row that seals them)."""

from __future__ import annotations

import io
import json
import uuid

from django.core.management import call_command
from django.db import connection, transaction

from ledger.models import Account, AccountStatus
from ledger.services import account_get_or_create, ledger_rebuild
from ledger.types import AccountKey, AccountType
from ledger.verify import ledger_verify

MAX = 2**63 - 1
MIN = -(2**63)


def _account(owner: str, code: str) -> int:
    key = AccountKey(owner, code, "EUR")
    account_get_or_create(key=key, type=AccountType.ASSET)
    return Account.objects.get(owner=owner, code=code, currency="EUR", parent=None).id


def _raw_journal(legs, *, phase: int = 0, pending_id: int | None = None, reverses_id: int | None = None) -> int:
    """A journal written by raw SQL: legs (account id, amount, balance_after, version)."""
    pending = phase == 1
    reference = "raw:" + uuid.uuid4().hex
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # the seal: entries first, then the journal row
            cursor.execute("SELECT coalesce(max(id), 0) + 1000 FROM ledger_journal")
            (journal_id,) = cursor.fetchone()
        else:
            cursor.execute(
                "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at, reverses_id,"
                " pending_id) VALUES (%s, 'adjustment', %s, '', '{}', now(), %s, %s) RETURNING id",
                [reference, phase, reverses_id, pending_id],
            )
            (journal_id,) = cursor.fetchone()
        for account_id, amount, balance_after, version in legs:
            cursor.execute(
                "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version,"
                " is_pending) VALUES (%s, %s, 'EUR', %s, %s, %s, %s)",
                [journal_id, account_id, amount, balance_after, version, pending],
            )
        if connection.vendor == "sqlite":
            cursor.execute(
                "INSERT INTO ledger_journal (id, reference, kind, phase, memo, metadata, occurred_at, reverses_id,"
                " pending_id) VALUES (%s, %s, 'adjustment', %s, '', '{}', '2026-01-01', %s, %s)",
                [journal_id, reference, phase, reverses_id, pending_id],
            )
    return journal_id


def check_verify_reports_sums_past_bigint() -> None:
    owner = "mer_ovf" + uuid.uuid4().hex[:10]
    # Replay past +-2^63: x goes MAX then + 2 (stored MAX again), y -MAX then - 2 (stored MIN: the
    # replay, -2^63 - 1, rounded to a float, is -2^63)
    x, y = _account(owner, "x"), _account(owner, "y")
    _raw_journal([(x, MAX, MAX, 1), (y, -MAX, -MAX, 1)])
    _raw_journal([(x, 2, MAX, 2), (y, -2, MIN, 2)])
    # A reversal of a journal with a leg of -2^63: its mirror (+2^63) is no bigint
    a, b, c = _account(owner, "a"), _account(owner, "b"), _account(owner, "c")
    original = _raw_journal([(a, MIN, MIN, 1), (b, 2**62, 2**62, 1), (c, 2**62, 2**62, 1)])
    reversal = _raw_journal([(a, 1, MIN + 1, 2), (b, -1, 2**62 - 1, 2)], reverses_id=original)
    # A post of a pending journal that reserved -2^63 on p: moving 1 of it is within the reservation
    p, q, r = _account(owner, "p"), _account(owner, "q"), _account(owner, "r")
    pending = _raw_journal([(p, MIN, 0, 1), (q, 2**62, 0, 1), (r, 2**62, 0, 1)], phase=1)
    _raw_journal([(p, -1, -1, 2), (q, 1, 1, 2)], phase=2, pending_id=pending)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM ledger_entry WHERE (account_id = %s OR account_id = %s) AND version = 2 ORDER BY id",
            [x, y],
        )
        overflowing = [row[0] for row in cursor.fetchall()]

    report = ledger_verify(limit=None)

    assert not report.ok
    assert report.problems["entries_replay_mismatch"] == overflowing, report.problems
    assert {x, y} <= set(report.problems["projection_mismatch"]), report.problems
    assert report.problems["reversal_mismatch"] == [reversal], report.problems
    assert report.problems["post_exceeds_pending"] == [], report.problems
    assert report.problems["unbalanced_journals"] == [], report.problems

    out = io.StringIO()
    try:
        call_command("ledger_verify", "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        assert exc.code == 1, exc.code
    else:
        raise AssertionError("ledger_verify exited 0 on a broken ledger")
    body = json.loads(out.getvalue())
    assert body["ok"] is False and body["problems"]["entries_replay_mismatch"] == overflowing, body

    # ledger_rebuild (the runbook's next step) cannot write such a replay into a bigint projection:
    # it rebuilds the others and freezes those (it failed with "bigint out of range" before)
    rebuilt = ledger_rebuild()
    assert set(rebuilt.frozen) == {x, y}, rebuilt
    assert set(Account.objects.filter(id__in=[x, y]).values_list("status", flat=True)) == {AccountStatus.FROZEN}
