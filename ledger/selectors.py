"""Reads. Balances are read from the projections (kept current in the posting transaction);
a hot account's balance is the sum of its shards."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Subquery, Sum, TextField
from django.db.models.functions import Cast, Coalesce

from ledger.errors import (
    AccountNotFoundError,
    BalanceTransactionCursorError,
    HotAccountVersionError,
    JournalNotFoundError,
)
from ledger.models import Account, Entry, Journal
from ledger.types import (
    MERCHANT_AVAILABLE,
    MERCHANT_ESCROW,
    MERCHANT_PENDING,
    MERCHANT_RESERVE,
    AccountBalance,
    AccountKey,
    Balance,
    Money,
)
from payera.core.horizon import committed_before


def _nul(*values: str | None) -> bool:
    """Whether a text argument holds a NUL character. No owner, code, currency or reference stored
    holds one (AccountKey and the posting services refuse it), and PostgreSQL refuses one in a query
    parameter with a raw DataError: a read given one answers as for an unknown value, on every
    engine (session 19)."""
    return any(isinstance(v, str) and "\x00" in v for v in values)


def _account(key: AccountKey) -> Account:
    account = Account.objects.filter(owner=key.owner, code=key.code, currency=key.currency, parent=None).first()
    if account is None:
        raise AccountNotFoundError(f"no account {key.owner}/{key.code}/{key.currency}")
    return account


def account_balance(*, key: AccountKey) -> AccountBalance:
    """One account's posted balance (debits - credits), pending amounts and version.
    For a hot account: the sums over its shards; `version` is the total entry count."""
    account = _account(key)
    if not account.hot:
        return AccountBalance(key, account.balance, account.debits_pending, account.credits_pending, account.version)
    b, dp, cp, v = _shard_sums(account.id, "balance", "debits_pending", "credits_pending", "version")
    return AccountBalance(key, b, dp, cp, v)


def _shard_sums(account_id: int, *fields: str) -> list[int]:
    """Sums of a hot account's shards, in Python: exact past the 64-bit range, which the sum may pass
    while each shard fits (SQLite's sum() raised "integer overflow"; review r19e, session 19)."""
    rows = Account.objects.filter(parent_id=account_id).values_list(*fields)
    return [sum(column) for column in zip(*rows, strict=True)] or [0] * len(fields)


def _sqlite_stamp(at: datetime, *, up: bool) -> str:
    """`at` written as SQLite stamps a journal's `created_at` (Django's `Now()`: UTC text to the
    millisecond, 'YYYY-MM-DD HH:MM:SS.SSS'): the millisecond at or below `at`, or at or above it
    with `up`. Stamps are compared with it as text (session 18): a datetime parameter is written
    '... .SSS000', or without a fraction at a whole second, and sorts above the stamp of the same
    instant, so a cursor took its own entry again and a balance at a whole second missed a journal
    stamped at its first millisecond."""
    naive = at.astimezone(UTC).replace(tzinfo=None) if at.utcoffset() is not None else at
    rest = naive.microsecond % 1000
    if rest:
        naive -= timedelta(microseconds=rest)
        if up:
            naive += timedelta(milliseconds=1)
    return naive.strftime("%Y-%m-%d %H:%M:%S.") + f"{naive.microsecond // 1000:03d}"


def _booked_text():
    """A journal's `created_at` as SQLite stores it (text), for comparisons with `_sqlite_stamp`."""
    return Cast("journal__created_at", output_field=TextField())


def account_balance_at(*, key: AccountKey, at: datetime) -> int:
    """The posted balance (debits - credits) as of `at` (journals created at or before it):
    a lookup of the last entry's balance_after per (sub-)account. Final (never changes again) for
    an `at` before `booked_final_before()`; a later `at` may still gain a journal stamped before it
    whose transaction commits later."""
    account = _account(key)
    rows = Account.objects.filter(parent=account) if account.hot else Account.objects.filter(id=account.id)
    entries = Entry.objects.filter(account=OuterRef("pk"))
    if connection.vendor == "sqlite":  # the stamp's own text (_sqlite_stamp)
        entries = entries.annotate(booked=_booked_text()).filter(booked__lte=_sqlite_stamp(at, up=False))
    else:
        entries = entries.filter(journal__created_at__lte=at)
    last = entries.order_by("-version").values("balance_after")[:1]
    # summed in Python: a hot account's shards may pass the 64-bit range together (_shard_sums)
    return sum(rows.annotate(b=Coalesce(Subquery(last), 0)).values_list("b", flat=True))


def booked_final_before() -> datetime:
    """The instant before which the journals booked (`created_at`) are all visible: an as-of
    balance (`account_balance_at`) or a statement period ending at or before it never changes.

    A journal's `created_at` is stamped inside its posting and the journal becomes visible when the
    poster's transaction commits, possibly later (docs/ledger.md "Known limits"). A posting stamps
    `clock_timestamp()` after its account locks, which take the transaction id, so the shared
    horizon `payera.core.horizon.committed_before()` covers it (its docstring says why)."""
    return committed_before()


def account_balance_at_version(*, key: AccountKey, version: int) -> int:
    """The posted balance right after the account's entry number `version` (non-hot accounts).

    A hot account has no single version sequence: its entries are versioned per shard, each shard
    its own 1, 2, 3... and its own balance_after (docs/ledger.md "Known limits"), so no version of
    it names one balance: HotAccountVersionError, which says to use `account_balance_at` (a
    balance as of an instant) or `account_balance` (now). Before (session 19) a hot account with
    entries answered AccountNotFoundError "has no version N"."""
    account = _account(key)
    if account.hot:
        raise HotAccountVersionError(
            f"account {key.owner}/{key.code}/{key.currency} is hot: its entries are versioned per shard, so it"
            " has no single version sequence; use account_balance_at(key=..., at=...) for its balance as of an"
            " instant, or account_balance(key=...) for its balance now"
        )
    if version == 0:
        return 0
    entry = Entry.objects.filter(account=account, version=version).values_list("balance_after", flat=True).first()
    if entry is None:
        raise AccountNotFoundError(f"account {key} has no version {version}")
    return entry


def balance_get(*, owner: str) -> Balance:
    """A merchant's balance per currency, as `GET /v1/balance` shows it: what the platform owes
    it (credit balances of its liability accounts, positive). `available` is net of amounts
    reserved by open pending journals (e.g. a payout being sent)."""
    if _nul(owner):
        return Balance(pending=(), available=(), escrow=(), reserve=())
    rows = (
        Account.objects.filter(
            owner=owner,
            parent=None,
            code__in=[MERCHANT_PENDING, MERCHANT_AVAILABLE, MERCHANT_ESCROW, MERCHANT_RESERVE],
        )
        .values_list("code", "currency", "hot", "id", "balance", "debits_pending")
        .order_by("currency")
    )
    buckets: dict[str, dict[str, int]] = defaultdict(dict)
    for code, currency, hot, account_id, balance, debits_pending in rows:
        if hot:
            balance, debits_pending = _shard_sums(account_id, "balance", "debits_pending")
        amount = -balance
        if code == MERCHANT_AVAILABLE:
            amount -= debits_pending
        buckets[code][currency] = amount

    def money(code: str) -> tuple[Money, ...]:
        return tuple(Money(amount, cur) for cur, amount in sorted(buckets.get(code, {}).items()))

    return Balance(
        pending=money(MERCHANT_PENDING),
        available=money(MERCHANT_AVAILABLE),
        escrow=money(MERCHANT_ESCROW),
        reserve=money(MERCHANT_RESERVE),
    )


def balance_transaction_list(*, owner: str, currency: str | None = None) -> QuerySet[Entry]:
    """An owner's entries, newest first by booking (`created_at`, then id), each with
    `created_at` (its journal's), `reference`, `kind`, `memo`, `account_code`; journal and
    account are select_related. Every committed entry: a list to walk with a cursor is
    `balance_transaction_page` (only what can no longer be booked below it)."""
    if _nul(owner, currency):
        return Entry.objects.none()
    qs = Entry.objects.filter(account__owner=owner, is_pending=False)
    if currency:
        qs = qs.filter(currency=currency)
    return (
        qs.select_related("journal", "account")
        .annotate(
            created_at=F("journal__created_at"),
            reference=F("journal__reference"),
            kind=F("journal__kind"),
            memo=F("journal__memo"),
            account_code=F("account__code"),
        )
        .order_by("-created_at", "-id")
    )


# One page of an owner's entries below (created_at, id) < (at, id), newest first, on PostgreSQL.
# On each account (a shard, for a hot one) the entries' order by version is their order by
# (journal created_at, id): the account's row lock serializes its postings, each stamps created_at
# (clock_timestamp(), one value per batch) and takes its entry ids after the lock, in version order
# (docs/ledger.md). So on each account the entries below the cursor are a prefix of its versions:
# a binary search over versions (~log2 of its entries, index lookups) finds where it ends, and the
# page is the newest `limit` of the accounts' next `limit` entries. The old single query sorted
# every entry of the owner to find 11 (~1 s per page for a merchant with 200,000 entries). The
# condition is checked again on every row listed, so a search ending too high costs a few skipped
# rows, never a wrong one.
_BALANCE_PAGE_PG = """
SELECT x.id FROM ledger_account a
CROSS JOIN LATERAL (
    WITH RECURSIVE bs(lo, hi) AS (
        SELECT 0::bigint, a.version + 1
        UNION ALL
        SELECT CASE WHEN p.below THEN p.mid ELSE bs.lo END, CASE WHEN p.below THEN bs.hi ELSE p.mid END
          FROM bs CROSS JOIN LATERAL (
              SELECT m.mid, (j.created_at, e.id) < (%(at)s, %(after)s) AS below
                FROM (SELECT (bs.lo + bs.hi) / 2 AS mid) m
                JOIN ledger_entry e ON e.account_id = a.id AND e.version = m.mid
                JOIN ledger_journal j ON j.id = e.journal_id
          ) p
         WHERE bs.hi - bs.lo > 1
    )
    SELECT e.id, j.created_at
      FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
     WHERE e.account_id = a.id AND NOT e.is_pending
       AND e.version <= coalesce((SELECT max(bs.lo) FROM bs WHERE bs.hi - bs.lo <= 1), a.version)
       AND (j.created_at, e.id) < (%(at)s, %(after)s)
     ORDER BY e.version DESC
     LIMIT %(n)s
) x
WHERE a.owner = %(owner)s AND (%(currency)s::text IS NULL OR a.currency = %(currency)s::text)
ORDER BY x.created_at DESC, x.id DESC
LIMIT %(n)s
"""


def balance_transaction_page(
    *, owner: str, limit: int, starting_after: int | None = None, currency: str | None = None
) -> tuple[list[Entry], bool]:
    """One page of `balance_transaction_list` for a cursor walk (`GET /v1/balance_transactions`):
    (entries, has_more), newest first by (`created_at`, id), below the entry `starting_after`.

    Only entries booked before `booked_final_before()` are listed: an entry is booked (its id and
    its journal's `created_at`) inside the posting and committed with the poster's transaction,
    possibly later, so a list of everything committed could gain an entry *below* ones already
    listed, which a reader walking down to the newest entry it knows would never see (session 16,
    h16f). Nothing can be booked before that instant any more, so a later entry always shows above
    the ones listed. A cursor is an entry a first page listed, so booked before such an instant:
    everything below it is final, and the next pages go down from it by the cursor alone (the
    instant can move back, when an older transaction takes its first lock, but what was final
    stays final). Raises `BalanceTransactionCursorError` for a cursor that is not one of the
    owner's entries. On PostgreSQL a page costs a search per account of the owner, not a sort of
    all its entries (`_BALANCE_PAGE_PG`). `limit` is an int from 1 to 2**62 (ValueError otherwise:
    before, a limit past bigint was a raw DataError and one below 1 an empty page with more)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 2**62:
        raise ValueError(f"limit must be an int from 1 to 2**62, not {limit!r}")
    if _nul(owner, currency):  # no such owner or currency (_nul)
        if starting_after is not None:
            raise BalanceTransactionCursorError(f"no entry {starting_after} of {owner!r}")
        return [], False
    qs = balance_transaction_list(owner=owner, currency=currency)
    if starting_after is None:
        at, after = booked_final_before(), 0  # (created_at, id) < (at, 0): created_at < at
    else:
        anchor = qs.filter(id=starting_after).values_list("created_at", "id").first()
        if anchor is None:
            raise BalanceTransactionCursorError(f"no entry {starting_after} of {owner}")
        at, after = anchor
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _BALANCE_PAGE_PG, {"at": at, "after": after, "n": limit + 1, "owner": owner, "currency": currency}
            )
            ids = [row[0] for row in cursor.fetchall()]
        rows = list(qs.filter(id__in=ids)) if ids else []
    else:
        # compared as the stamps' text (_sqlite_stamp): before, the cursor's own entry and those booked
        # in its millisecond sorted below the cursor and came back on every page (session 18)
        booked = qs.annotate(booked=_booked_text())
        if starting_after is None:
            rows = list(booked.filter(booked__lt=_sqlite_stamp(at, up=True))[: limit + 1])
        else:
            mark = booked.filter(id=starting_after).values_list("booked", flat=True).first()
            rows = list(booked.filter(Q(booked__lt=mark) | Q(booked=mark, id__lt=after))[: limit + 1])
    return rows[:limit], len(rows) > limit


def account_entry_list(
    *, key: AccountKey, occurred_before: datetime | None = None, exclude_kinds: tuple[str, ...] = ()
) -> QuerySet[Entry]:
    """Posted entries of one account (its shards for a hot account), oldest first by journal
    `occurred_at` then id, each annotated with `occurred_at`, `reference` and `kind` of its
    journal. `occurred_before` keeps journals whose effective time is strictly earlier;
    `exclude_kinds` drops journals of those kinds. An account never created has no entries.
    Used by merchant settlement (what of merchant pending is old enough to settle)."""
    account = Account.objects.filter(owner=key.owner, code=key.code, currency=key.currency, parent=None).first()
    if account is None:
        return Entry.objects.none()
    qs = Entry.objects.filter(is_pending=False)
    qs = qs.filter(account__parent=account) if account.hot else qs.filter(account=account)
    if occurred_before is not None:
        qs = qs.filter(journal__occurred_at__lt=occurred_before)
    if exclude_kinds:
        qs = qs.exclude(journal__kind__in=list(exclude_kinds))
    return qs.annotate(
        occurred_at=F("journal__occurred_at"), reference=F("journal__reference"), kind=F("journal__kind")
    ).order_by("journal__occurred_at", "id")


def journal_get(*, journal_id: int | None = None, reference: str | None = None) -> Journal:
    if journal_id is None and _nul(reference):
        raise JournalNotFoundError(f"no journal {reference!r}")
    qs = Journal.objects.prefetch_related("entries__account")
    journal = (qs.filter(id=journal_id) if journal_id is not None else qs.filter(reference=reference)).first()
    if journal is None:
        raise JournalNotFoundError(f"no journal {journal_id or reference}")
    return journal


def journal_list_for_references(*, references: list[str] | tuple[str, ...] | set[str]) -> QuerySet[Journal]:
    """The journals of these business references (unique index), oldest first, with their
    entries and accounts prefetched (three queries however many). References that were never
    posted are simply absent. The back office's payment page reads a payment's journals this way."""
    return (
        Journal.objects.filter(reference__in=sorted({r for r in references if not _nul(r)}))
        .prefetch_related("entries__account")
        .order_by("created_at", "id")
    )


def journal_list(*, owner: str | None = None) -> QuerySet[Journal]:
    qs = Journal.objects.all()
    if _nul(owner):
        return qs.none()
    if owner:
        qs = qs.filter(entries__account__owner=owner).distinct()
    return qs.order_by("-id")


def account_list(*, owner: str | None = None) -> QuerySet[Account]:
    qs = Account.objects.filter(parent=None)
    if _nul(owner):
        return qs.none()
    if owner:
        qs = qs.filter(owner=owner)
    return qs.order_by("owner", "code", "currency")


def pending_open_list() -> QuerySet[Journal]:
    return Journal.objects.pending_open().order_by("expires_at", "id")


def ledger_totals() -> dict[str, int]:
    """Σ posted balances per currency over every account: 0 everywhere in a sound ledger."""
    if connection.vendor == "sqlite":
        # SQLite's sum() raises "integer overflow" past the 64-bit range, which a sum may pass on the
        # way (accounts near the ends of it): ledger_sum_text() is exact (ledger/db.py; review r19e)
        with connection.cursor() as cursor:
            cursor.execute("SELECT currency, ledger_sum_text(balance) FROM ledger_account GROUP BY currency")
            return {currency: int(total) for currency, total in cursor.fetchall()}
    rows = Account.objects.values("currency").annotate(t=Sum("balance")).values_list("currency", "t")
    return dict(rows)


__all__ = [
    "account_entry_list",
    "account_balance",
    "account_balance_at",
    "account_balance_at_version",
    "account_list",
    "balance_get",
    "balance_transaction_list",
    "balance_transaction_page",
    "journal_get",
    "journal_list",
    "journal_list_for_references",
    "ledger_totals",
    "pending_open_list",
]
