"""idempotency_idempotencykey: drop Django's automatic merchant_id index and its `_like` twin. The
unique (merchant_id, key) leads with merchant_id: it serves every lookup (always by merchant and
key) and the CASCADE from a merchant's delete. No prefix (`LIKE 'x%'`) query on the table.
docs/decisions/per-payment-indexes.md.
"""

import django.db.models.deletion
from django.db import migrations, models

from payera.core.db_indexes import replace_field_index


class Migration(migrations.Migration):
    dependencies = [
        ("idempotency", "0002_idempotencykey_resource"),
        ("merchants", "0002_merchant_refund_threshold_action_perms"),
    ]

    operations = [
        replace_field_index(
            "idempotency", "idempotencykey", "merchant",
            models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="merchants.merchant"),
            None,
        ),
    ]
