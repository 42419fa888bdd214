"""Run by test_sqlite_account_id.py in a subprocess on a fresh SQLite file (the embedded default):
rules PostgreSQL enforces that SQLite's triggers should enforce too. Each case runs on its own; the
script prints one JSON object {case: "ok" or the failure} as its last line."""

import json
import uuid
from datetime import UTC, datetime

from tests.ledger.sqlite_script import outcome, setup

setup()

from django.db import DatabaseError, connection, transaction  # noqa: E402

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@case
def account_id_change_refused():
    """PostgreSQL's ledger_account_guard refuses an UPDATE of an account's id ("entries name their
    account by id, and no foreign key holds it"); SQLite's ledger_account_identity trigger names
    owner, code, currency, type, hot, parent_id and shard but not id. Swapping the ids of two
    merchants' accounts (three UPDATEs) hands one merchant's entries, and after ledger_rebuild its
    balance, to the other."""
    from ledger import selectors, services
    from ledger.models import Account
    from ledger.types import Accounts, transfer_lines

    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    a, b = Accounts.merchant_available(f"mer_a{tag}", "EUR"), Accounts.merchant_available(f"mer_b{tag}", "EUR")
    bank = Accounts.bank_cash("EUR")
    services.journal_post(reference=f"fa:{tag}", lines=transfer_lines(debit=bank, credit=a, amount=1000),
                          occurred_at=now)  # fmt: skip
    services.journal_post(reference=f"fb:{tag}", lines=transfer_lines(debit=bank, credit=b, amount=1),
                          occurred_at=now)  # fmt: skip
    ia = Account.objects.get(owner=a.owner, code=a.code, parent=None).id
    ib = Account.objects.get(owner=b.owner, code=b.code, parent=None).id
    try:
        with transaction.atomic(), connection.cursor() as c:
            c.execute("UPDATE ledger_account SET id = -id WHERE id = %s", [ia])
            c.execute("UPDATE ledger_account SET id = %s WHERE id = %s", [ia, ib])
            c.execute("UPDATE ledger_account SET id = %s WHERE id = %s", [ib, -ia])
    except DatabaseError as exc:
        assert "identity never changes" in str(exc), exc
    else:
        mine = [t.reference for t in selectors.balance_transaction_list(owner=b.owner)]
        raise AssertionError(
            "SQLite let an account's id change (PostgreSQL refuses it): the ids of two merchants' accounts"
            f" were swapped, and merchant B's balance transactions are now {mine}"
        )
    services.ledger_rebuild()
    assert selectors.balance_get(owner=a.owner).available[0].amount == 1000


def main() -> None:
    print(json.dumps({name: outcome(fn) for name, fn in CASES.items()}))


main()
