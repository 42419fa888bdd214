"""The indexes of the tables every `POST /v1/payments` writes (docs/decisions/per-payment-indexes.md):
exactly these, on a database built by the migrations. Django's automatic `_like`
(varchar_pattern_ops) twins, which only a case-sensitive `LIKE 'x%'` uses and no query has, are
gone; a later field change that brings one back (an `AlterField` with `db_index=True`, a new
indexed CharField, a primary key altered) or drops one a query needs fails here. Change the list
with the index, and say in the migration which queries need it."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's indexes"),
]

# table -> index name -> definition after "USING btree"
EXPECTED = {
    "audit_auditlogentry": {
        "audit_auditlogentry_action_f0f92e8d": "(action)",
        "audit_auditlogentry_actor_id_2d2c5668": "(actor_id)",
        "audit_auditlogentry_content_type_id_327d6926": "(content_type_id)",
        "audit_auditlogentry_object_id_b73d3f64": "(object_id)",
        "audit_auditlogentry_pkey": "UNIQUE (id)",
        "audit_auditlogentry_timestamp_1a55e4ce": "(\"timestamp\")",
        "audit_entry_api_key_idx": "(api_key_id)",
        "audit_entry_obj_merchant_idx": "(object_merchant_id)",
        "audit_entry_object_pk_idx": "(object_pk)",
        "audit_entry_request_idx": "(request_id)",
    },
    "events_event": {
        "events_event_created_at_010fc7ef": "(created_at)",
        "events_event_pkey": "UNIQUE (id)",
        "events_evt_merchant_recent": "(merchant_id, created_at DESC, id DESC)",
        "events_evt_unrelayed": "(created_at) WHERE (relayed_at IS NULL)",
    },
    "idempotency_idempotencykey": {
        "idempotency_created_idx": "(created_at)",
        "idempotency_idempotencykey_pkey": "UNIQUE (id)",
        "idempotency_key_unique_per_merchant": "UNIQUE (merchant_id, key)",
    },
    "payments_capture": {
        "capture_attempt_idx": "(attempt_id)",
        "capture_one_per_attempt": "UNIQUE (attempt_id) WHERE (NOT ((status)::text = 'failed'::text))",
        "capture_payment_idx": "(payment_id)",
        "capture_succeeded_at_idx": "(updated_at) WHERE ((status)::text = 'succeeded'::text)",
        "payments_capture_pkey": "UNIQUE (id)",
    },
    "payments_payment": {
        "payment_amount_idx": "(amount)",
        "payment_created_idx": "(created_at DESC, id DESC)",
        "payment_customer_idx": "(customer_id)",
        "payment_internal_idempotency_uniq":
            "UNIQUE (merchant_id, idempotency_key) WHERE (NOT ((idempotency_key)::text = ''::text))",
        "payment_merchant_created_idx": "(merchant_id, created_at DESC, id DESC)",
        "payment_payment_method_idx": "(payment_method_id)",
        "payment_status_auth_idx": "(status, authorized_at)",
        "payment_status_created_idx": "(status, created_at DESC)",
        "payments_payment_pkey": "UNIQUE (id)",
    },
    "payments_paymentattempt": {
        "attempt_connector_payment_idx": "(connector, payment_id)",
        "attempt_merchant_idx": "(merchant_id)",
        "attempt_payment_sequence_uniq": "UNIQUE (payment_id, sequence)",
        "attempt_psp_reference_idx": "(psp_reference)",
        "attempt_recovery_idx": "(status, next_inquiry_at)",
        "payments_paymentattempt_pkey": "UNIQUE (id)",
    },
    "payments_paymentevent": {
        "payment_event_payment_idx": "(payment_id, id)",
        "payments_paymentevent_pkey": "UNIQUE (id)",
    },
    "payments_paymentmethod": {
        "payments_paymentmethod_pkey": "UNIQUE (id)",
        "pm_card_last4_idx": "(card_last4)",
        "pm_customer_idx": "(customer_id)",
        "pm_fingerprint_idx": "(fingerprint)",
        "pm_merchant_created_idx": "(merchant_id, created_at DESC, id DESC)",
    },
}


def indexes() -> dict[str, dict[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = ANY(%s)",
            [list(EXPECTED)],
        )
        found: dict[str, dict[str, str]] = {table: {} for table in EXPECTED}
        for table, name, definition in cursor.fetchall():
            unique = "UNIQUE " if definition.startswith("CREATE UNIQUE") else ""
            found[table][name] = unique + definition.split(" USING btree ", 1)[-1]
        return found


def test_no_like_twin_on_the_per_payment_tables():
    found = indexes()
    likes = sorted(f"{table}.{name}" for table, named in found.items() for name, definition in named.items()
                   if name.endswith("_like") or "pattern_ops" in definition)
    assert likes == []


def test_the_per_payment_tables_have_exactly_the_indexes_their_queries_need():
    assert indexes() == EXPECTED


def test_the_kept_foreign_keys_lead_an_index():
    """Every foreign key of these tables is the first column of some index (the FK checks of a
    referenced row's delete, and the joins, need one), now that several are served by a composite."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s)",
            [list(EXPECTED)],
        )
        fks = cursor.fetchall()
    assert fks
    found = indexes()
    unserved = [(table, column) for table, column in fks
                if not any(definition.removeprefix("UNIQUE ").startswith(f"({column}")
                           and "WHERE" not in definition for definition in found[table].values())]
    assert unserved == []
