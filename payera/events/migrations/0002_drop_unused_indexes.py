"""events_event: drop the `_like` twins of the primary key and of merchant_id, and the plain
merchant_id index (events_evt_merchant_recent leads with it). No query on events uses a
case-sensitive prefix on those columns (the one `__startswith`, the list's `type=x.*`, is on
`type`, which has no index); the admin searches `=id`/`=merchant_id` (iexact: no btree serves it).
docs/decisions/per-payment-indexes.md.
"""

from django.db import migrations, models

from payera.core.db_indexes import drop_pk_like_indexes, replace_field_index


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0001_initial"),
    ]

    operations = [
        replace_field_index(
            "events", "event", "merchant_id",
            models.CharField(max_length=40),
            None,
        ),
        drop_pk_like_indexes("events_event"),
    ]
