"""Accounts: created on demand (chart accounts also on first posting, inside the posting call)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from ledger.engine import hot_shards
from ledger.errors import InvalidPostingError
from ledger.models import Account, AccountStatus
from ledger.types import AccountKey, AccountSpec, AccountType, chart_spec


def account_create_locked(*, key: AccountKey, spec: AccountSpec) -> Account:
    """Create an account (and its shards when hot) or return the existing one. Inside a transaction."""
    try:
        with transaction.atomic():
            account = Account.objects.create(
                owner=key.owner,
                code=key.code,
                currency=key.currency,
                type=spec.type.value,
                hot=spec.hot,
                debits_must_not_exceed_credits=spec.debits_must_not_exceed_credits,
                credits_must_not_exceed_debits=spec.credits_must_not_exceed_debits,
                shards=hot_shards() if spec.hot else 0,
            )
            if spec.hot:
                Account.objects.bulk_create(
                    Account(
                        owner=key.owner,
                        code=key.code,
                        currency=key.currency,
                        type=spec.type.value,
                        hot=True,
                        parent=account,
                        shard=n,
                    )
                    for n in range(account.shards)
                )
            return account
    except IntegrityError:
        return Account.objects.get(owner=key.owner, code=key.code, currency=key.currency, parent=None)


def account_get_or_create(
    *,
    key: AccountKey,
    type: AccountType | None = None,
    debits_must_not_exceed_credits: bool | None = None,
    credits_must_not_exceed_debits: bool | None = None,
    hot: bool | None = None,
) -> Account:
    """The account named `key`, created if missing: the chart's spec for chart codes, else the
    given type and flags. An existing account keeps its flags (a mismatch is an error)."""
    chart = chart_spec(key.code)
    spec = AccountSpec(
        type=type or (chart.type if chart else AccountType.ASSET),
        hot=hot if hot is not None else bool(chart and chart.hot),
        debits_must_not_exceed_credits=debits_must_not_exceed_credits
        if debits_must_not_exceed_credits is not None
        else bool(chart and chart.debits_must_not_exceed_credits),
        credits_must_not_exceed_debits=credits_must_not_exceed_debits
        if credits_must_not_exceed_debits is not None
        else bool(chart and chart.credits_must_not_exceed_debits),
    )
    if chart is None and type is None:
        raise InvalidPostingError(f"account code {key.code!r} is not in the chart: give its type")
    if spec.hot and (spec.debits_must_not_exceed_credits or spec.credits_must_not_exceed_debits):
        raise InvalidPostingError("a hot account cannot have a balance limit")
    account = Account.objects.filter(owner=key.owner, code=key.code, currency=key.currency, parent=None).first()
    if account is None:
        with transaction.atomic():
            account = account_create_locked(key=key, spec=spec)
    if (account.hot, account.debits_must_not_exceed_credits, account.credits_must_not_exceed_debits) != (
        spec.hot,
        spec.debits_must_not_exceed_credits,
        spec.credits_must_not_exceed_debits,
    ):
        raise InvalidPostingError(f"account {key} exists with other flags")
    return account


@transaction.atomic(durable=True)
def account_set_status(*, key: AccountKey, status: AccountStatus) -> None:
    """Freeze or unfreeze an account: a frozen account refuses postings (`account_frozen`).
    A status that is not an AccountStatus is a ValueError (before, session 19: the database's
    IntegrityError, after the lookup)."""
    if status not in AccountStatus.values:
        raise ValueError(f"status must be one of {', '.join(AccountStatus.values)}, not {status!r}")
    updated = Account.objects.filter(owner=key.owner, code=key.code, currency=key.currency, parent=None).update(
        status=status
    )
    if not updated:
        from ledger.errors import AccountNotFoundError

        raise AccountNotFoundError(f"no account {key}")
    Account.objects.filter(parent__owner=key.owner, parent__code=key.code, parent__currency=key.currency).update(
        status=status
    )
