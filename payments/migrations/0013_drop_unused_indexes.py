"""Drop the indexes of the tables every payment writes that no query needs (issue #5: index
maintenance was ~9 % of PostgreSQL's CPU per `POST /v1/payments`). docs/decisions/per-payment-indexes.md.

Dropped, and what was checked (grep of `__startswith`, `LIKE`, `prefix`, the admin's search_fields,
list_filter, ordering and date_hierarchy, the back-office's payment_search_q, the selectors):
- every `_like` (varchar_pattern_ops) twin on these tables: it serves only a case-sensitive
  `LIKE 'x%'` / `__startswith`, and no query on these tables has one (search is by equality, `=`
  search_fields are iexact and plain ones icontains, which no btree serves); the primary keys'
  twins too (RunPython at the end: no field option stops Django from making those);
- payments_payment.merchant_id, payments_paymentmethod.merchant_id: payment_merchant_created_idx /
  pm_merchant_created_idx lead with merchant_id and serve its equality lookups and the FK checks;
- payments_paymentattempt.payment_id: attempt_payment_sequence_uniq (payment_id, sequence) leads with it;
- payments_paymentevent.payment_id: payment_event_payment_idx (payment_id, id) leads with it.
Kept as plain btrees (Meta indexes, same columns as Django's automatic ones): payment.customer_id and
payment.payment_method_id (back-office search by cus_/pm_/last 4, FK checks), attempt.merchant_id
(merchant scoping, FK check), paymentmethod.customer_id and .fingerprint (saved cards by customer and
fingerprint), capture.payment_id and capture.attempt_id (capture_one_per_attempt is partial: it can
not serve the FK check of an attempt whose captures failed).
"""

import django.db.models.deletion
from django.db import migrations, models

from payera.core.db_indexes import drop_pk_like_indexes, replace_field_index


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0002_merchant_refund_threshold_action_perms"),
        ("payments", "0012_capture_refund_succeeded_at_index"),
    ]

    operations = [
        replace_field_index(
            "payments", "payment", "merchant",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="merchants.merchant"),
            None,
        ),
        replace_field_index(
            "payments", "payment", "customer",
            models.ForeignKey(blank=True, null=True, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="payments.customer"),
            models.Index(fields=["customer"], name="payment_customer_idx"),
        ),
        replace_field_index(
            "payments", "payment", "payment_method",
            models.ForeignKey(blank=True, null=True, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="payments", to="payments.paymentmethod"),
            models.Index(fields=["payment_method"], name="payment_payment_method_idx"),
        ),
        replace_field_index(
            "payments", "paymentattempt", "payment",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="attempts", to="payments.payment"),
            None,
        ),
        replace_field_index(
            "payments", "paymentattempt", "merchant",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="merchants.merchant"),
            models.Index(fields=["merchant"], name="attempt_merchant_idx"),
        ),
        replace_field_index(
            "payments", "paymentmethod", "merchant",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="merchants.merchant"),
            None,
        ),
        replace_field_index(
            "payments", "paymentmethod", "customer",
            models.ForeignKey(blank=True, null=True, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="payments.customer"),
            models.Index(fields=["customer"], name="pm_customer_idx"),
        ),
        replace_field_index(
            "payments", "paymentmethod", "fingerprint",
            models.CharField(blank=True, default="", max_length=128),
            models.Index(fields=["fingerprint"], name="pm_fingerprint_idx"),
        ),
        replace_field_index(
            "payments", "capture", "payment",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="captures", to="payments.payment"),
            models.Index(fields=["payment"], name="capture_payment_idx"),
        ),
        replace_field_index(
            "payments", "capture", "attempt",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="captures", to="payments.paymentattempt"),
            models.Index(fields=["attempt"], name="capture_attempt_idx"),
        ),
        replace_field_index(
            "payments", "paymentevent", "payment",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="events", to="payments.payment"),
            None,
        ),
        drop_pk_like_indexes(
            "payments_payment", "payments_paymentattempt", "payments_paymentmethod", "payments_capture"),
    ]
