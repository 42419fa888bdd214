"""Accounts, journals and entries. Journals and entries are append-only (database triggers).

Sign convention: an entry's `amount` is positive for a debit and negative for a credit;
an account's `balance` is the net of its posted entries (debits - credits). Liabilities and
revenue therefore carry negative balances; selectors flip the sign for display.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from ledger.types import AccountType, JournalPhase

CURRENCY_RE = r"^[A-Z]{3}$"


class AccountStatus(models.TextChoices):
    ACTIVE = "active"
    FROZEN = "frozen"


class Account(models.Model):
    """An account, or one sub-account (shard) of a hot account.

    A hot account (never limited) is spread over `shards` sub-accounts (rows with `parent` set);
    its entries land on whichever shard a writer could lock without waiting, and its balance is
    the sum of its shards. Everything else is locked and updated in place, in the posting's
    transaction: `balance`, `debits_pending`, `credits_pending` and `version` are the projection
    of its entries, rebuilt and checked by `ledger_verify` / `ledger_rebuild`.
    """

    id = models.BigAutoField(primary_key=True)
    owner = models.CharField(max_length=64)
    code = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    type = models.CharField(max_length=16, choices=[(t.value, t.value) for t in AccountType])
    debits_must_not_exceed_credits = models.BooleanField(default=False, db_default=False)
    credits_must_not_exceed_debits = models.BooleanField(default=False, db_default=False)
    hot = models.BooleanField(default=False, db_default=False)
    status = models.CharField(
        max_length=16, choices=AccountStatus.choices, default=AccountStatus.ACTIVE, db_default="active"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="shard_set")
    shard = models.SmallIntegerField(null=True, blank=True)
    shards = models.SmallIntegerField(default=0, db_default=0)
    # Projection of the entries (kept current in the posting transaction).
    balance = models.BigIntegerField(default=0, db_default=0)
    debits_pending = models.BigIntegerField(default=0, db_default=0)
    credits_pending = models.BigIntegerField(default=0, db_default=0)
    version = models.BigIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "code", "currency"], condition=Q(parent__isnull=True), name="ledger_account_key_uniq"
            ),
            models.UniqueConstraint(fields=["parent", "shard"], name="ledger_account_shard_uniq"),
            models.UniqueConstraint(fields=["id", "currency"], name="ledger_account_id_currency_uniq"),
            # On PostgreSQL these two are a row trigger instead (ledger_account_checked, migration 0006:
            # a CHECK is rebuilt and evaluated by every projection UPDATE); same names, same SQLSTATE.
            models.CheckConstraint(condition=Q(currency__regex=CURRENCY_RE), name="ledger_account_currency_iso"),
            models.CheckConstraint(
                condition=~(
                    Q(hot=True) & (Q(debits_must_not_exceed_credits=True) | Q(credits_must_not_exceed_debits=True))
                ),
                name="ledger_account_hot_unlimited",
            ),
            models.CheckConstraint(
                condition=Q(debits_pending__gte=0) & Q(credits_pending__gte=0), name="ledger_account_pending_gte_0"
            ),
            # On PostgreSQL a row trigger on INSERT and UPDATE OF status instead (migration 0008), like
            # currency_iso and hot_unlimited: a CHECK is evaluated by every projection UPDATE.
            models.CheckConstraint(condition=Q(status__in=AccountStatus.values), name="ledger_account_status_valid"),
            # The balance limits, checked by the database on every projection update (under the row lock).
            models.CheckConstraint(
                condition=Q(debits_must_not_exceed_credits=False) | Q(balance__lte=0 - models.F("debits_pending")),
                name="ledger_account_debits_le_credits",
            ),
            models.CheckConstraint(
                condition=Q(credits_must_not_exceed_debits=False) | Q(balance__gte=models.F("credits_pending")),
                name="ledger_account_credits_le_debits",
            ),
        ]
        indexes = [models.Index(fields=["owner", "currency"], name="ledger_acct_owner_cur")]

    def __str__(self) -> str:
        suffix = f"#{self.shard}" if self.parent_id else ""
        return f"{self.owner}/{self.code}/{self.currency}{suffix}"


class JournalQuerySet(models.QuerySet):
    def pending_open(self):
        """Pending journals not yet posted or voided."""
        return self.filter(phase=JournalPhase.PENDING, resolutions__isnull=True)


class Journal(models.Model):
    """One business event: a unique reference, its entries, and what it reverses or resolves."""

    id = models.BigAutoField(primary_key=True)
    reference = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=32)
    phase = models.SmallIntegerField(choices=[(p.value, p.name.lower()) for p in JournalPhase], default=0)
    memo = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(db_default=Now())
    # At most one reversal per journal and one resolution (post or void) per pending journal:
    # partial unique indexes (NULLs are not indexed), also the arbiters of ON CONFLICT.
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals", db_index=False
    )
    pending = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="resolutions", db_index=False
    )
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = JournalQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reverses"], condition=Q(reverses__isnull=False), name="ledger_journal_reverses_uniq"
            ),
            models.UniqueConstraint(
                fields=["pending"], condition=Q(pending__isnull=False), name="ledger_journal_pending_uniq"
            ),
            models.CheckConstraint(
                condition=Q(pending__isnull=True) | Q(phase__in=[JournalPhase.POST_PENDING, JournalPhase.VOID_PENDING]),
                name="ledger_journal_pending_link",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(phase=JournalPhase.PENDING),
                name="ledger_journal_expiry_pending_only",
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(phase=JournalPhase.PENDING), name="ledger_journal_pending_exp"
            )
        ]

    def __str__(self) -> str:
        return self.reference


class Entry(models.Model):
    """One leg of a journal on one account: signed amount, the account's balance and version after it."""

    id = models.BigAutoField(primary_key=True)
    # The journal's existence is checked with its balance (statement trigger ledger_entry_checked and,
    # when needed, at commit; journals are never deleted): no RI check and row lock per entry.
    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="entries", db_constraint=False)
    # Indexed by (account, version); account and currency are checked once per INSERT statement by the
    # trigger ledger_entry_checked (migration 0005; it replaced the composite foreign key of 0002).
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_index=False, db_constraint=False
    )
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    version = models.BigIntegerField()
    is_pending = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "version"], name="ledger_entry_account_version_uniq"),
            # On PostgreSQL these two are checked by the entry statement trigger instead
            # (ledger_entry_checked, migration 0006); same names, same SQLSTATE.
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_amount_nonzero"),
            models.CheckConstraint(condition=Q(version__gte=1), name="ledger_entry_version_gte_1"),
        ]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.journal_id}:{self.account_id}:{self.amount}"
