"""Inputs of `ledger.selectors` / `ledger.services` that reached the database raw (session 19): a
clear error or an empty answer, never a DataError or IntegrityError from the database.

- `balance_transaction_page(limit=...)`: a limit past bigint raised DataError "bigint out of range";
  a limit below 1 answered ([], True): an empty page that says there is more. Now ValueError.
- `pending_expire_due(limit=...)`: a limit past bigint raised DataError; the page size is now capped
  at bigint's maximum (the run goes on page after page anyway).
- `account_set_status(status=...)`: a status that is not one raised the database trigger's
  IntegrityError (PostgreSQL) or the CHECK's (SQLite), after the lookup. Now ValueError, nothing changed.
- A NUL character in an owner or reference given to a read (`balance_get`, `account_list`,
  `journal_get`, `balance_transaction_page`, `journal_list_for_references`) raised PostgreSQL's
  DataError ("cannot contain NUL"). No account or journal holds one (AccountKey and the posting
  services refuse it), so these answer as for any unknown owner or reference, on every engine."""

import pytest

from ledger import selectors, services
from ledger.errors import JournalNotFoundError
from ledger.models import Account, AccountStatus
from ledger.types import AccountKey, AccountType, transfer_lines

pytestmark = pytest.mark.django_db


def test_a_page_limit_out_of_range_is_a_value_error(owner, now):
    a, b = AccountKey(owner, "a", "EUR"), AccountKey(owner, "b", "EUR")
    for key in (a, b):
        services.account_get_or_create(key=key, type=AccountType.ASSET)
    services.journal_post(reference=f"le:{owner}", lines=transfer_lines(debit=a, credit=b, amount=3), occurred_at=now)
    for limit in (2**63, 2**70, 0, -1):
        with pytest.raises(ValueError, match="limit"):
            selectors.balance_transaction_page(owner=owner, limit=limit)


def test_an_expiry_run_takes_a_limit_past_bigint():
    assert services.pending_expire_due(limit=2**70) >= 0


def test_an_unknown_status_is_a_value_error(owner):
    key = AccountKey(owner, "s", "EUR")
    services.account_get_or_create(key=key, type=AccountType.ASSET)
    with pytest.raises(ValueError, match="status"):
        services.account_set_status(key=key, status="weird")
    assert Account.objects.get(owner=owner, code="s").status == AccountStatus.ACTIVE


def test_a_nul_in_an_owner_or_reference_finds_nothing():
    assert selectors.balance_get(owner="mer_\x00") == selectors.balance_get(owner="mer_nobody_here")
    assert list(selectors.account_list(owner="mer_\x00")) == []
    assert selectors.balance_transaction_page(owner="mer_\x00", limit=5) == ([], False)
    assert list(selectors.journal_list_for_references(references=["x\x00"])) == []
    with pytest.raises(JournalNotFoundError):
        selectors.journal_get(reference="x\x00")
