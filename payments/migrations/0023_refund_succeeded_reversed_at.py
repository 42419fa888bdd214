"""A refund's own times: when its success was recorded (`succeeded_at`) and when its return was
(`reversed_at`), each set once by its transition. Reconciliation read `updated_at` (and a returned
refund's `created_at` for its refund half), which any later save of the refund moved.

Backfill from the ledger, whose journals are never updated: a succeeded refund's `refund:<re>`
journal (`updated_at` without one), a returned refund's `refund_reversal:<re>` (`updated_at`
without one) and its `refund:<re>` (`created_at` without one). The indexes follow: the period's
refunds by `succeeded_at` (succeeded or returned since) and returns by `reversed_at`, in place of
the three on `updated_at` / `created_at`."""

from django.db import migrations, models

# the tables are this migration's (payments_refund) and ledger 0014's (ledger_journal)
BACKFILL = (
    "UPDATE payments_refund SET succeeded_at = COALESCE((SELECT j.occurred_at FROM ledger_journal j"
    " WHERE j.reference = 'refund:' || payments_refund.id), updated_at) WHERE status = 'succeeded'",
    "UPDATE payments_refund SET reversed_at = COALESCE((SELECT j.occurred_at FROM ledger_journal j"
    " WHERE j.reference = 'refund_reversal:' || payments_refund.id), updated_at),"
    " succeeded_at = COALESCE((SELECT j.occurred_at FROM ledger_journal j"
    " WHERE j.reference = 'refund:' || payments_refund.id), created_at)"
    " WHERE status = 'failed' AND EXISTS (SELECT 1 FROM ledger_journal j"
    " WHERE j.reference = 'refund_reversal:' || payments_refund.id)",
)


def _backfill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for sql in BACKFILL:
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0014_pending_resolved_first"),
        ("merchants", "0002_merchant_refund_threshold_action_perms"),
        ("payments", "0022_attempt_void_number"),
    ]

    operations = [
        migrations.AddField(
            model_name="refund",
            name="reversed_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="succeeded_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(_backfill, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="refund", name="refund_succeeded_at_idx"),
        migrations.RemoveIndex(model_name="refund", name="refund_failed_at_idx"),
        migrations.RemoveIndex(model_name="refund", name="refund_failed_created_idx"),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("succeeded_at__isnull", False)),
                fields=["succeeded_at"],
                name="refund_succeeded_time_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("reversed_at__isnull", False)),
                fields=["reversed_at"],
                name="refund_reversed_at_idx",
            ),
        ),
    ]
