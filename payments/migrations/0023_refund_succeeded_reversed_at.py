"""A refund's own times: when its success was recorded (`succeeded_at`) and when its return was
(`reversed_at`), each set once by its transition. Reconciliation read `updated_at` (and a returned
refund's `created_at` for its refund half), which any later save of the refund moved.

Filled for the existing refunds by migration 0025_refund_times_backfill, batch
by batch outside this migration's transaction: here it was one UPDATE in it, every refund row locked
until the migration committed (~26 s per 400k refunds). The indexes follow: the period's refunds by
`succeeded_at` (succeeded or returned since) and returns by `reversed_at`, in place of the three on
`updated_at` / `created_at`. (An install that applied this migration with its backfill runs 0025 as
a no-op: no refund is pending there; the schema is the same either way.)"""

from django.db import migrations, models


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
