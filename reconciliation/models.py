"""Merchant settlement and payouts (docs/settlement.md).

- `MerchantPayoutSettings`: per merchant, minimum payout, reserve kept back, bank account
  (encrypted through payera.secrets; only a masked reference is stored in clear). It is also the
  row the settlement and payout services lock per merchant (one lock helper per aggregate).
- `SettlementRun`: one per merchant, currency and cutoff date; moves merchant pending ->
  available with the journal `settlement:<merchant>:<currency>:<cutoff date>`.
- `SettlementItem`: each merchant-pending ledger entry a run settled; `entry_id` is unique, so an
  entry is settled at most once whoever runs what concurrently.
- `Payout`: available -> payouts in transit -> bank cash (paid) or back to available (failed).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.lookups import GreaterThan
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.horizon import CommitStampField
from payera.core.ids import IdField
from payera.merchants.scoping import MerchantScopedQuerySet

DEFAULT_RESERVE_BPS = 0  # basis points of available kept back at each payout


class MerchantPayoutSettings(models.Model):
    merchant = models.OneToOneField(
        "merchants.Merchant", on_delete=models.PROTECT, primary_key=True, related_name="+"
    )
    payouts_enabled = models.BooleanField(default=True)
    # The merchant's own minimum per currency, each in that currency's minor units ({"EUR": 5000,
    # "JPY": 8000}); a currency it does not name: the platform's default for that currency
    # (settings.RECONCILIATION_PAYOUT_MINIMUM). Checked by `payout_settings_update`.
    minimum_payout_amounts = models.JSONField(
        default=dict, blank=True,
        help_text="Per currency, in its minor units: no payout below this amount ({\"EUR\": 5000, \"JPY\": 8000}). "
                  "A currency not named: its default (RECONCILIATION_PAYOUT_MINIMUM).",
    )
    reserve_bps = models.PositiveIntegerField(
        default=DEFAULT_RESERVE_BPS, help_text="Basis points (1/100 %) of available kept back at each payout."
    )
    # The bank account: encrypted JSON {"account": ..., "holder": ...}; only the masked form is clear.
    bank_account_ciphertext = models.TextField(blank=True, default="", editable=False)
    bank_account_masked = models.CharField(max_length=40, blank=True, default="", editable=False)
    # keyed hash (secrets backend, BANK_ACCOUNT_FINGERPRINT_KEY) of the clear account: which account
    # it is, without revealing it; each payout keeps the one it was created for
    bank_account_fingerprint = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "merchant payout settings"
        constraints = [
            models.CheckConstraint(condition=Q(reserve_bps__lte=10000), name="payout_settings_reserve_le_100pct"),
        ]

    def __str__(self) -> str:
        return f"payout settings of {self.merchant_id}"


class SettlementRunStatus(models.TextChoices):
    SETTLED = "settled", "Settled"  # a journal moved `amount` from pending to available
    CARRIED_FORWARD = "carried_forward", "Carried forward"  # nothing moved: net <= 0, kept for later


class SettlementRunQuerySet(MerchantScopedQuerySet):
    pass


class SettlementRun(models.Model):
    id = IdField(prefix="stl")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    cutoff_date = models.DateField(help_text="Last capture day (UTC) included.")
    cutoff_at = models.DateTimeField(help_text="Entries whose journal occurred strictly before this are settled.")
    status = models.CharField(max_length=20, choices=SettlementRunStatus.choices)
    amount = models.BigIntegerField(default=0, help_text="Moved pending -> available (minor units).")
    credits = models.BigIntegerField(default=0, help_text="Sum of settled credits (captures net of fees).")
    debits = models.BigIntegerField(default=0, help_text="Sum of settled debits (refunds, chargebacks).")
    carried_amount = models.BigIntegerField(
        default=0, help_text="Net of eligible entries left for a later run (<= 0) when nothing moved."
    )
    item_count = models.PositiveIntegerField(default=0)
    journal_reference = models.CharField(max_length=255, blank=True, default="")
    payout = models.ForeignKey(
        "reconciliation.Payout", null=True, blank=True, on_delete=models.PROTECT, related_name="settlement_runs"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = SettlementRunQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "currency", "cutoff_date"], name="settlement_run_uniq"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="settlement_run_amount_gte_0"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="settlement_run_currency_iso"),
        ]
        indexes = [models.Index(fields=["merchant", "currency", "-created_at"], name="settlement_run_mer_cur_idx")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.currency} {self.cutoff_date}"


class SettlementItem(models.Model):
    """One merchant-pending ledger entry settled by a run (amount: positive = owed to the merchant)."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(SettlementRun, on_delete=models.PROTECT, related_name="items")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    entry_id = models.BigIntegerField(unique=True)
    journal_reference = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    occurred_at = models.DateTimeField()
    amount = models.BigIntegerField()

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["run", "occurred_at"], name="settlement_item_run_idx")]

    def __str__(self) -> str:
        return f"{self.journal_reference} {self.amount}"


class PayoutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_TRANSIT = "in_transit", "In transit"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"


class PayoutQuerySet(MerchantScopedQuerySet):
    pass


class Payout(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="po")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    status = FSMField(choices=PayoutStatus.choices, default=PayoutStatus.PENDING, protected=True)
    payout_date = models.DateField(help_text="One payout per merchant, currency and day.")
    # How the amount was found: available_before - reserve_kept = amount.
    available_before = models.BigIntegerField()
    reserve_kept = models.BigIntegerField(default=0)
    bank_account_masked = models.CharField(max_length=40, blank=True, default="")
    # the fingerprint of the account the payout was created for (blank: created before fingerprints)
    bank_account_fingerprint = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    failure_reason = models.CharField(max_length=200, blank=True, default="")
    journal_reference = models.CharField(max_length=255)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    in_transit_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    objects = PayoutQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "currency", "payout_date"], name="payout_one_per_day"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_gt_0"),
            models.CheckConstraint(condition=Q(status__in=PayoutStatus.values), name="payout_status_valid"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="payout_currency_iso"),
        ]
        indexes = [models.Index(fields=["merchant", "-created_at", "-id"], name="payout_merchant_created_idx")]
        permissions = [
            ("mark_paid_payout", "Can mark a payout paid"),
            ("mark_failed_payout", "Can mark a payout failed"),
            ("export_payout", "Can export payout, settlement and statement tables (CSV, masked accounts)"),
            # the bank file carries clear bank accounts: its own permission (finance), audited per payout
            ("export_bank_file_payout", "Can export the bank file of payouts (clear bank accounts)"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.id

    @transition(field=status, source=PayoutStatus.PENDING, target=PayoutStatus.IN_TRANSIT)
    def mark_in_transit(self, *, at) -> None:
        self.in_transit_at = at

    @transition(field=status, source=PayoutStatus.IN_TRANSIT, target=PayoutStatus.PAID)
    def mark_paid(self, *, at) -> None:
        self.paid_at = at

    @transition(field=status, source=[PayoutStatus.PENDING, PayoutStatus.IN_TRANSIT], target=PayoutStatus.FAILED)
    def mark_failed(self, *, at, reason: str) -> None:
        self.failed_at = at
        self.failure_reason = reason[:200]

    @transition(field=status, source=PayoutStatus.PAID, target=PayoutStatus.FAILED)
    def mark_returned(self, *, at, reason: str) -> None:
        """The bank paid it, then sent it back (closed account, wrong name): failed after paid.
        `paid_at` stays (it was paid); `failed_at` is when it came back."""
        self.failed_at = at
        self.failure_reason = reason[:200]


# --- PSP settlement reports: import, matching, discrepancies (docs/reconciliation.md) ---------
class ReconOutcome(models.TextChoices):
    MATCHED = "matched", "Matched"
    AMOUNT_MISMATCH = "amount_mismatch", "Amount mismatch"
    CURRENCY_MISMATCH = "currency_mismatch", "Currency mismatch"
    MISSING_IN_PAYERA = "missing_in_payera", "Missing in Payera"
    MISSING_AT_PSP = "missing_at_psp", "Missing at PSP"
    DUPLICATE = "duplicate", "Duplicate"
    FEE_MISMATCH = "fee_mismatch", "Fee difference"


DISCREPANCY_KINDS = [o for o in ReconOutcome.values if o != ReconOutcome.MATCHED]


class ReconRunStatus(models.TextChoices):
    LOADING = "loading", "Loading"  # rows are being loaded (progress: rows_loaded / rows_total)
    MATCHING = "matching", "Matching"  # the lines matched in the database (one statement)
    HEALING = "healing", "Healing"  # the PSP asked about "missing in Payera" lines, those matched again
    POSTING = "posting", "Posting"  # discrepancies opened, settlement journals posted (one transaction)
    DONE = "done", "Done"
    # the import failed after the run was recorded (summary["error"]); its lines were removed, the
    # same file again imports it from scratch
    FAILED = "failed", "Failed"


class ReconciliationRun(models.Model):
    """One imported settlement report of one PSP (unique per PSP and file hash: a second import
    of the same file finds this run and changes nothing)."""

    id = IdField(prefix="rcn")
    psp = models.CharField(max_length=32)
    file_name = models.CharField(max_length=255, blank=True, default="")
    file_sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=16, default="command")  # command | upload | scheduled
    created_by = models.CharField(max_length=150, blank=True, default="")
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=ReconRunStatus.choices, default=ReconRunStatus.LOADING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_loaded = models.PositiveIntegerField(default=0)
    row_errors = models.JSONField(default=list, blank=True)  # [{"line": n, "message": "..."}] (first 1000)
    row_error_count = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)  # counts, sums, healed, receivable check
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # the import's heartbeat: bumped with every progress it commits (a chunk loaded, a phase begun,
    # a heal inquiry); a run not done that has not progressed for RECONCILIATION_RUN_BUSY_MINUTES crashed
    progress_at = models.DateTimeField(default=timezone.now, editable=False)
    # which import of the file owns the run: 1, then +1 each time an import takes a failed or
    # crashed run over (an import whose run was taken over stops at its next progress)
    attempt = models.PositiveIntegerField(default=1, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["psp", "file_sha256"], name="recon_run_file_once")]
        ordering = ["-created_at"]
        permissions = [
            ("import_reconciliationrun", "Can import a PSP settlement report"),
            ("export_reconciliationrun", "Can export reconciliation tables (CSV)"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.psp} {self.period_start or ''}"

    @property
    def progress_percent(self) -> int:
        """Rows loaded, in percent (100 only once the run is done: loading is the first of the
        import's phases, `progress_phase` says which one it is in)."""
        if self.status == ReconRunStatus.DONE:
            return 100
        if self.status != ReconRunStatus.LOADING:
            return min(99, int(100 * self.rows_loaded / self.rows_total) if self.rows_total else 0)
        return int(100 * self.rows_loaded / self.rows_total) if self.rows_total else 0

    @property
    def progress_phase(self) -> str:
        """Where an import is: "250000 of 1000000 rows loaded (25%)", "1000000 rows loaded;
        matching (step 2 of 4: loading, matching, healing, posting)", "done", the error of a failed one."""
        if self.status == ReconRunStatus.LOADING:
            return f"{self.rows_loaded} of {self.rows_total} rows loaded ({self.progress_percent}%)"
        if self.status == ReconRunStatus.FAILED:
            return f"{(self.summary or {}).get('error', '')} (nothing imported: the same file again imports it anew)"
        steps = [ReconRunStatus.LOADING, ReconRunStatus.MATCHING, ReconRunStatus.HEALING, ReconRunStatus.POSTING]
        if self.status in steps:
            step = f"step {steps.index(self.status) + 1} of 4: loading, matching, healing, posting"
            return f"{self.rows_loaded} rows loaded; {self.status} ({step})"
        return str(self.status)


class StatementLine(models.Model):
    """One row of a PSP settlement report, normalized; the staging table the matching SQL joins
    (filled by COPY on PostgreSQL), then the lasting record of what the PSP said and the outcome."""

    id = models.BigAutoField(primary_key=True)
    # no index of its own (the (run, line_number) index serves it) and no database FK: a deferred
    # FK trigger per line is a third of a million-line import; lines are written only by the import
    run = models.ForeignKey(
        ReconciliationRun, on_delete=models.PROTECT, related_name="lines", db_index=False, db_constraint=False
    )
    psp = models.CharField(max_length=32)
    line_number = models.PositiveIntegerField()
    row_key = models.CharField(max_length=200)  # <psp>:<kind>:<PSP operation or authorization id>
    kind = models.CharField(max_length=32)  # capture | refund | chargeback | chargeback_reversal | fee | adjustment
    reference = models.CharField(max_length=64)  # our attempt id
    psp_reference = models.CharField(max_length=128)
    operation_reference = models.CharField(max_length=64, blank=True, default="")  # our cap_/re_ id
    operation_psp_reference = models.CharField(max_length=128, blank=True, default="")
    gross = models.BigIntegerField()
    fee = models.BigIntegerField()
    net = models.BigIntegerField()
    expected_fee = models.BigIntegerField(default=0)  # by the PSP's fee schedule
    currency = models.CharField(max_length=3)
    settled_on = models.DateField()
    payout_batch_id = models.CharField(max_length=64, blank=True, default="")
    outcome = models.CharField(max_length=20, choices=ReconOutcome.choices, blank=True, default="")
    merchant_id = models.CharField(max_length=40, blank=True, default="")
    object_id = models.CharField(max_length=40, blank=True, default="")  # the capture/refund/dispute matched
    expected_gross = models.BigIntegerField(null=True, blank=True)
    expected_currency = models.CharField(max_length=3, blank=True, default="")
    healed = models.BooleanField(default=False)  # missing in Payera until the inquiry it triggered
    # its row key was counted before (an earlier run's line, or an earlier line of this file): the
    # outcome is "duplicate". Kept apart from the outcome so that the key's uniqueness does not read
    # the outcome (a line written before it is matched: the write-once import, decision record)
    duplicate = models.BooleanField(default=False)
    journal_reference = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["run", "line_number"], name="recon_line_run_idx"),
            # the object alone: a PSP is the same on (nearly) every line, and leading with it made
            # the index cost twice as much to build in a large import (object ids are unique per PSP)
            models.Index(fields=["object_id"], name="recon_line_obj_idx"),
            # the few lines that did not match (heal, discrepancies): an entry only for those
            models.Index(fields=["run", "outcome"], condition=~Q(outcome="matched"), name="recon_line_unmatched_idx"),
        ]
        constraints = [
            # a row key is counted once, whatever the runs: every other line with it is a duplicate
            # (the import matches optimistically and lets this index find a key twice in a file)
            models.UniqueConstraint(fields=["row_key"], condition=Q(duplicate=False), name="recon_line_key_once"),
        ]
        ordering = ["run", "line_number"]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.line_number}"


class DiscrepancyStatus(models.TextChoices):
    OPEN = "open", "Open"
    INVESTIGATING = "investigating", "Investigating"
    RESOLVED = "resolved", "Resolved"
    WRITTEN_OFF = "written_off", "Written off"


class Discrepancy(ConcurrentTransitionMixin, models.Model):
    """What a run could not explain, for finance: open -> investigating -> resolved (reason, and
    a ledger adjustment posted with the finance role) or written off."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="discrepancies")
    line = models.ForeignKey(StatementLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=ReconOutcome.choices)
    psp = models.CharField(max_length=32)
    merchant = models.ForeignKey(
        "merchants.Merchant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(max_length=64, blank=True, default="")  # our attempt id (or the PSP's, unknown)
    object_id = models.CharField(max_length=40, blank=True, default="")  # capture/refund/dispute id, if any
    currency = models.CharField(max_length=3)
    psp_amount = models.BigIntegerField(null=True, blank=True)  # gross as the PSP reported it
    payera_amount = models.BigIntegerField(null=True, blank=True)  # gross as Payera has it
    difference = models.BigIntegerField(default=0)  # unexplained: psp_amount - payera_amount (or the fee gap)
    status = FSMField(choices=DiscrepancyStatus.choices, default=DiscrepancyStatus.OPEN, protected=True)
    reason = models.TextField(blank=True, default="")
    adjustment_reference = models.CharField(max_length=255, blank=True, default="")
    # what finance's resolution took off the PSP receivable (signed minor units, in
    # `cleared_currency`: the currency of Payera's capture, refund or dispute; 0: nothing). The
    # receivable check subtracts these from what is unsettled, the aging from the item it names.
    # Database defaults: the import opens discrepancies with INSERT ... SELECT naming other columns
    receivable_cleared = models.BigIntegerField(default=0, db_default=0)
    cleared_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    # the account the clearing debited (psp_fee_expense: an adjustment; reconciliation_differences: a
    # write-off or a line settled as reported; suspense: suspense moved to the item): a later report
    # line that settles the item gives the cleared amount back to it (decision record, "A late line")
    cleared_account = models.CharField(max_length=32, blank=True, default="", db_default="")
    # what later settlements of the item gave back of `receivable_cleared` (same sign, at most it):
    # the receivable check and the aging count receivable_cleared - receivable_recovered
    receivable_recovered = models.BigIntegerField(default=0, db_default=0)
    # money of the line settled to suspense and moved out once explained (suspense_reallocate):
    # [{"move", "reference", "amount", "currency", "to", "account", "object_id", "merchant_id", "by",
    #   "reason", "at"}, ...] (NULL: none; the import's INSERT ... SELECT does not name it)
    suspense_moves = models.JSONField(null=True, blank=True, default=None)
    # four eyes (docs/reconciliation.md, "Four eyes"): what this discrepancy's resolution moved
    # without a second user's approval (absolute minor units of `moved_alone_currency`; 0: nothing, or
    # approved). The threshold holds for the sum over the item's discrepancies (same PSP and
    # object_id, same currency), so an item's resolutions split under it still need a second user.
    moved_alone = models.BigIntegerField(default=0, db_default=0)
    moved_alone_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    assigned_to = models.CharField(max_length=150, blank=True, default="")
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "discrepancies"
        constraints = [
            # one missing-at-PSP discrepancy per capture/refund and direction, whatever runs see it
            # missing (a returned refund has two: the refund, -, and its reversal, +)
            models.UniqueConstraint(
                F("psp"), F("object_id"), GreaterThan(F("payera_amount"), 0),
                condition=Q(kind="missing_at_psp"), name="recon_dsc_missing_once_each_way",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "kind"], name="recon_dsc_status_idx"),
            # the few that cleared a receivable (finance's resolutions): what every receivable check sums
            models.Index(fields=["psp", "cleared_currency"], condition=~Q(receivable_cleared=0),
                         name="recon_dsc_cleared_idx"),
            # the few that moved money without approval: what the four-eyes check of an item sums
            models.Index(fields=["psp", "object_id"], condition=~Q(moved_alone=0), name="recon_dsc_moved_alone_idx"),
        ]
        ordering = ["-created_at", "-id"]
        permissions = [
            ("investigate_discrepancy", "Can start investigating a discrepancy"),
            ("resolve_discrepancy", "Can resolve a discrepancy (with a ledger adjustment)"),
            ("write_off_discrepancy", "Can write a discrepancy off"),
            ("reallocate_suspense_discrepancy", "Can move a discrepancy's money out of suspense once explained"),
        ]

    def __str__(self) -> str:
        return f"dsc {self.pk} {self.kind}"

    @transition(field=status, source=DiscrepancyStatus.OPEN, target=DiscrepancyStatus.INVESTIGATING)
    def mark_investigating(self, *, by: str, reason: str) -> None:
        self.assigned_to = by
        self.reason = reason

    @transition(
        field=status,
        source=[DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING],
        target=DiscrepancyStatus.RESOLVED,
    )
    def mark_resolved(
        self, *, by: str, reason: str, adjustment_reference: str, at, receivable_cleared: int = 0,
        cleared_currency: str = "", cleared_account: str = "",
    ) -> None:  # fmt: skip
        self.resolved_by = by
        self.reason = reason
        self.adjustment_reference = adjustment_reference
        self.closed_at = at
        self.receivable_cleared = receivable_cleared
        self.cleared_currency = cleared_currency if receivable_cleared else ""
        self.cleared_account = cleared_account if receivable_cleared else ""

    @transition(
        field=status,
        source=[DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING],
        target=DiscrepancyStatus.WRITTEN_OFF,
    )
    def mark_written_off(
        self, *, by: str, reason: str, at, adjustment_reference: str = "", receivable_cleared: int = 0,
        cleared_currency: str = "", cleared_account: str = "",
    ) -> None:  # fmt: skip
        self.resolved_by = by
        self.reason = reason
        self.closed_at = at
        self.adjustment_reference = adjustment_reference
        self.receivable_cleared = receivable_cleared
        self.cleared_currency = cleared_currency if receivable_cleared else ""
        self.cleared_account = cleared_account if receivable_cleared else ""


class DiscrepancyApprovalStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"  # approved by a second finance user, and the action carried out (money moved)
    FAILED = "failed"  # approved, but the action no longer fits (see `failure`): nothing moved
    REJECTED = "rejected"


class DiscrepancyAction(models.TextChoices):
    RESOLVE = "resolve", "resolve with an adjustment"
    SETTLE_AS_REPORTED = "settle_as_reported", "settle as reported"
    WRITE_OFF = "write_off", "write off"
    REALLOCATE_SUSPENSE = "reallocate_suspense", "move out of suspense"


class DiscrepancyApproval(ConcurrentTransitionMixin, models.Model):
    """Four eyes on finance's money resolutions of a discrepancy (docs/reconciliation.md, "Four
    eyes"): one that moves more than its currency's threshold (`RECONCILIATION_APPROVAL_THRESHOLDS`,
    else `RECONCILIATION_APPROVAL_THRESHOLD` scaled; with what the item's other resolutions moved
    alone) waits here,
    `pending`, until a *different* user holding the same permission approves it; the action then runs
    with the parameters asked for, in the approver's transaction, under the same checks as a direct
    one (what no longer fits fails the approval, nothing moves).

    pending --approve--> done | failed
    pending --reject---> rejected
    The database refuses a decided approval by the user who asked for it, and two pending approvals
    of one discrepancy."""

    id = models.BigAutoField(primary_key=True)
    discrepancy = models.ForeignKey(Discrepancy, on_delete=models.PROTECT, related_name="approvals")
    # the discrepancy's (NULL: a line Payera could not tie to a merchant: all-merchant staff only)
    merchant = models.ForeignKey("merchants.Merchant", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")  # fmt: skip
    action = models.CharField(max_length=24, choices=DiscrepancyAction.choices)
    # the action's own arguments as asked (adjustment and currency; a suspense move's to, amount,
    # currency, object_id, merchant_id, move)
    params = models.JSONField(default=dict, blank=True)
    amount = models.BigIntegerField()  # what the action moves when asked (minor units of `currency`, absolute)
    currency = models.CharField(max_length=3)
    reason = models.TextField()
    status = FSMField(choices=DiscrepancyApprovalStatus.choices, default=DiscrepancyApprovalStatus.PENDING,
                      protected=True)  # fmt: skip
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")  # fmt: skip
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")
    failure = models.CharField(max_length=500, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ("view",)
        permissions = [("approve_discrepancyapproval", "Can approve or reject a discrepancy resolution waiting "
                                                       "for approval")]  # fmt: skip
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="recon_dsc_approval_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=DiscrepancyApprovalStatus.values),
                                   name="recon_dsc_approval_status_valid"),  # fmt: skip
            # four eyes, whoever writes: an approved (done, failed) action was approved by someone else
            models.CheckConstraint(
                condition=Q(status__in=[DiscrepancyApprovalStatus.PENDING, DiscrepancyApprovalStatus.REJECTED])
                | (Q(decided_by__isnull=False) & ~Q(decided_by=F("requested_by"))),
                name="recon_dsc_approval_four_eyes",
            ),
            # one question at a time per discrepancy
            models.UniqueConstraint(fields=["discrepancy"], condition=Q(status=DiscrepancyApprovalStatus.PENDING),
                                    name="recon_dsc_approval_one_pending"),  # fmt: skip
        ]
        indexes = [models.Index(fields=["status", "-requested_at"], name="recon_dsc_approval_status_idx")]
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"dap {self.pk} ({self.get_action_display()} of dsc {self.discrepancy_id}, {self.status})"

    @transition(field=status, source=[DiscrepancyApprovalStatus.PENDING], target=DiscrepancyApprovalStatus.DONE)
    def mark_done(self, *, by, note: str, at) -> None:
        self.decided_by, self.decision_note, self.decided_at = by, note, at

    @transition(field=status, source=[DiscrepancyApprovalStatus.PENDING], target=DiscrepancyApprovalStatus.FAILED)
    def mark_failed(self, *, by, note: str, at, failure: str) -> None:
        self.decided_by, self.decision_note, self.decided_at = by, note, at
        self.failure = failure[:500]

    @transition(field=status, source=[DiscrepancyApprovalStatus.PENDING], target=DiscrepancyApprovalStatus.REJECTED)
    def reject(self, *, by, note: str, at) -> None:
        self.decided_by, self.decision_note, self.decided_at = by, note, at


class SingleHandedDay(models.Model):
    """Four eyes per user and day (docs/reconciliation.md, "Four eyes"): what one user's money
    resolutions of discrepancies moved without a second user's approval in one currency on one UTC
    day (absolute minor units, summed). The four-eyes check locks this row (created when missing)
    after the item's and adds the resolution's amount under that lock: once a user's total of the
    day plus the next resolution would pass the daily limit of its currency
    (`RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS`, else 5 times the approval threshold), that one
    needs a second user too. Written only in the resolution's own transaction (a refused or failed
    resolution adds nothing); what a second user approved is not counted."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    day = models.DateField()  # UTC
    moved = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["user", "currency", "day"], name="recon_single_handed_user_day"),
            models.CheckConstraint(condition=Q(moved__gte=0), name="recon_single_handed_moved_non_negative"),
        ]
        ordering = ["-day", "user_id", "currency"]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day} {self.moved} {self.currency}"
