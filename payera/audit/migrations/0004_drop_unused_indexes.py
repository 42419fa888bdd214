"""audit_auditlogentry (our concrete model, AUDITLOG_LOGENTRY_MODEL; auditlog's own table is the
unused auditlog_logentry, see 0003): 18 indexes for a row written ~3 times per payment. Dropped:
- the six `_like` twins (object_pk, cid, api_key_id, merchant_id, object_merchant_id, request_id):
  no query uses a case-sensitive prefix on them (the admin's search_fields are `icontains`, which
  no btree serves; auditlog's managers filter by equality);
- cid: a copy of request_id here; only auditlog's CIDFilter reads it and our admin replaced
  auditlog's list_filter with ["action", "content_type"];
- merchant_id (the acting API key's merchant): no query filters on it; the merchant scoping of the
  admin is on object_merchant_id.
Kept, as plain Meta indexes with the same columns: object_pk (get_for_object(s), the payment page's
audit records: content_type + object_pk IN), object_merchant_id (staff_filter_merchants), api_key_id
and request_id (what one key / one request did, the admin's ?api_key_id= / ?request_id=). Kept as
they were: action, content_type_id (list filters, PROTECT), actor_id (PROTECT), object_id (auditlog's
lookups for integer primary keys), timestamp (ordering, the default -timestamp).
docs/decisions/per-payment-indexes.md.
"""

from django.db import migrations, models

from payera.core.db_indexes import replace_field_index


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_detach_unused_auditlog_table"),
    ]

    operations = [
        replace_field_index(
            "audit", "auditlogentry", "object_pk",
            models.CharField(max_length=255, verbose_name="object pk"),
            models.Index(fields=["object_pk"], name="audit_entry_object_pk_idx"),
        ),
        replace_field_index(
            "audit", "auditlogentry", "object_merchant_id",
            models.CharField(blank=True, default="", max_length=64),
            models.Index(fields=["object_merchant_id"], name="audit_entry_obj_merchant_idx"),
        ),
        replace_field_index(
            "audit", "auditlogentry", "api_key_id",
            models.CharField(blank=True, default="", max_length=64),
            models.Index(fields=["api_key_id"], name="audit_entry_api_key_idx"),
        ),
        replace_field_index(
            "audit", "auditlogentry", "request_id",
            models.CharField(blank=True, default="", max_length=64),
            models.Index(fields=["request_id"], name="audit_entry_request_idx"),
        ),
        replace_field_index(
            "audit", "auditlogentry", "merchant_id",
            models.CharField(blank=True, default="", max_length=64),
            None,
        ),
        replace_field_index(
            "audit", "auditlogentry", "cid",
            models.CharField(blank=True, max_length=255, null=True, verbose_name="Correlation ID"),
            None,
        ),
    ]
