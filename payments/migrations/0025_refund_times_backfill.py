"""The refund times of 0023 (`succeeded_at`, `reversed_at`) for the refunds made before it, from the
ledger, whose journals are never updated: a succeeded refund's `refund:<re>` journal (`updated_at`
without one), a returned refund's `refund_reversal:<re>` and its `refund:<re>` (`created_at`
without one).

Batch by batch (payera.core.backfill, docs/runbooks/backfill.md): not atomic, each batch of
BATCH_SIZE refunds, in id order, an UPDATE committed on its own, so a refund row is locked for one
batch (this was one UPDATE in 0023's transaction: every refund row locked ~26 s per 400k refunds).
Only rows still pending are touched, so a rerun changes nothing and a run interrupted between
batches resumes where it stopped (`manage.py migrate` again). Reversing it leaves the times in
place (0023's reversal drops the columns)."""

from django.db import migrations

from payera.core.backfill import Backfill, run_backfill

BATCH_SIZE = 5000  # refunds per batch (per transaction); tests patch it

# the tables are 0023's (payments_refund) and ledger 0014's (ledger_journal)
_JOURNAL_AT = "(SELECT j.occurred_at FROM ledger_journal j WHERE j.reference = '{prefix}:' || payments_refund.id)"
BACKFILLS = (
    # succeeded: when the ledger recorded it
    Backfill(
        table="payments_refund",
        set=f"succeeded_at = COALESCE({_JOURNAL_AT.format(prefix='refund')}, updated_at)",
        pending="status = 'succeeded' AND succeeded_at IS NULL",
    ),
    # returned (failed after it succeeded: a reversal journal): when it was returned, and succeeded.
    # Either may be missing alone: a refund that succeeded in the old code (no succeeded_at) and was
    # returned in the new one (mark_reversed sets reversed_at only).
    Backfill(
        table="payments_refund",
        set=(
            f"reversed_at = COALESCE(reversed_at, {_JOURNAL_AT.format(prefix='refund_reversal')}),"
            f" succeeded_at = COALESCE(succeeded_at, {_JOURNAL_AT.format(prefix='refund')}, created_at)"
        ),
        pending=(
            "status = 'failed' AND (reversed_at IS NULL OR succeeded_at IS NULL) AND EXISTS (SELECT 1"
            " FROM ledger_journal j WHERE j.reference = 'refund_reversal:' || payments_refund.id)"
        ),
    ),
)


def _backfill(apps, schema_editor):
    for backfill in BACKFILLS:
        run_backfill(backfill, batch_size=BATCH_SIZE, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False  # each batch commits on its own (run_backfill)

    dependencies = [
        ("ledger", "0014_pending_resolved_first"),
        ("payments", "0024_subscription_cancel_at_period_end_later_dunning"),
    ]

    operations = [migrations.RunPython(_backfill, migrations.RunPython.noop, elidable=True)]
