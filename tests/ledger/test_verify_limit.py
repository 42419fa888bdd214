"""Review 14c: `manage.py ledger_verify` must fail on a broken ledger whatever `--limit` asks to list."""

import json

import pytest
from django.core.management import call_command
from django.db import connection

from ledger import services
from ledger.models import Account
from ledger.types import Accounts, transfer_lines

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_verify_with_no_ids_to_list_still_reports_a_tampered_ledger(owner, now, capsys, limit):
    """`ledger_verify --limit 0` (or a negative limit) answers `"ok": true` and exits 0 on a ledger
    whose projection was changed behind the posting functions.

    What happens: `--limit` is documented as "offending ids listed per check", but ledger/verify.py
    applies it inside the SQL (`row_number() ... WHERE rn <= limit`), and `VerifyReport.ok` is "no
    check listed an id": with no id to list, every problem disappears, so a monitor that runs
    `ledger_verify --json --limit 0` to keep its output small is told the ledger is sound. Expected:
    exit 1 and `"ok": false` (with no id listed, or the option refused). Suspected: ledger/verify.py
    `_FIRST` / `VerifyReport.ok` and ledger/management/commands/ledger_verify.py (no bound on
    `--limit`)."""
    key = Accounts.merchant_available(owner, "EUR")
    services.journal_post(reference=f"fund:{owner}", lines=transfer_lines(debit=Accounts.bank_cash("EUR"), credit=key,
                          amount=500), occurred_at=now)  # fmt: skip
    account = Account.objects.get(owner=owner, code=key.code, parent=None)
    with connection.cursor() as cursor:  # a projection changed by a raw writer (the test runs as the owner)
        cursor.execute("UPDATE ledger_account SET balance = balance - 1000000 WHERE id = %s", [account.id])
    with pytest.raises(SystemExit) as exit_:
        call_command("ledger_verify")
    assert exit_.value.code == 1  # found with the default limit
    capsys.readouterr()

    code = 0
    try:
        call_command("ledger_verify", "--json", "--limit", limit)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr().out
    assert code == 1 and json.loads(out)["ok"] is False, f"--limit {limit}: exit {code}, {out}"


def test_verify_counts_what_it_does_not_list(owner, now):
    """`limit` bounds the ids listed, not what is found: the report counts every problem."""
    from ledger.verify import ledger_verify

    key = Accounts.merchant_available(owner, "EUR")
    services.journal_post(reference=f"fund:{owner}", lines=transfer_lines(debit=Accounts.bank_cash("EUR"), credit=key,
                          amount=500), occurred_at=now)  # fmt: skip
    ids = list(Account.objects.filter(owner=owner, parent=None).values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET version = version + 7 WHERE id = %s", [ids[0]])
    report = ledger_verify(limit=0)
    assert not report.ok and report.problems["projection_mismatch"] == []
    assert report.counts["projection_mismatch"] == 1
    assert ledger_verify(limit=1).problems["projection_mismatch"] == [ids[0]]
    with pytest.raises(ValueError, match="0 or more"):
        ledger_verify(limit=-1)
