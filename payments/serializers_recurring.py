"""Output objects of saved payment methods and subscriptions (API answers and events'
`data.object`, rendered by one serializer each)."""

from __future__ import annotations

import hashlib
import hmac

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payera.core.db import created_timestamp
from payments.method_types import method_spec
from payments.serializers import PaymentCardOutputSerializer, PaymentSepaDebitOutputSerializer, method_display


def public_fingerprint(pm) -> str | None:
    """The fingerprint a merchant sees: the stored keyed hash of the number, hashed again under
    the merchant's id, so equal cards match within one merchant and never across merchants."""
    if not pm.fingerprint:
        return None
    return hmac.new(pm.merchant_id.encode(), pm.fingerprint.encode(), hashlib.sha256).hexdigest()[:32]


class SavedPaymentMethodOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    type = serializers.CharField()
    customer = serializers.CharField(source="customer_id", allow_null=True)
    card = serializers.SerializerMethodField()
    sepa_debit = serializers.SerializerMethodField()
    fingerprint = serializers.SerializerMethodField(
        help_text="Equal for the same card number (or IBAN) within your account: spot duplicates.")
    reusable = serializers.SerializerMethodField(
        help_text="Whether it can be charged off session (a customer-present payment saved it successfully; "
                  "not detached, not expired).")
    detached = serializers.SerializerMethodField(
        help_text="Unix seconds when it was detached (its number destroyed), or null.")
    created = serializers.SerializerMethodField()

    def get_object(self, pm) -> str:
        return "payment_method"

    @extend_schema_field(PaymentCardOutputSerializer(allow_null=True))
    def get_card(self, pm) -> dict | None:
        return method_display(pm, "card")

    @extend_schema_field(PaymentSepaDebitOutputSerializer(allow_null=True))
    def get_sepa_debit(self, pm) -> dict | None:
        return method_display(pm, "sepa_debit")

    def get_fingerprint(self, pm) -> str | None:
        return public_fingerprint(pm)

    def get_reusable(self, pm) -> bool:
        if pm.detached_at is not None or pm.customer_id is None:
            return False
        if method_spec(pm.type).expired(pm, timezone.now().date()):  # refused off session: expired_card
            return False
        if method_spec(pm.type).mandate:
            return method_spec(pm.type).not_reusable(pm) is None
        return any(c.psp_token or c.network_transaction_id for c in pm.credentials.all())

    def get_detached(self, pm) -> int | None:
        return created_timestamp(pm.detached_at) if pm.detached_at else None

    def get_created(self, pm) -> int:
        return created_timestamp(pm.created_at)


def render_payment_method(pm) -> dict:
    return dict(SavedPaymentMethodOutputSerializer(pm).data)


class SubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    status = serializers.CharField(help_text="active | past_due | unpaid | canceled")
    customer = serializers.CharField(source="customer_id")
    payment_method = serializers.CharField(source="payment_method_id")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    interval = serializers.CharField(help_text="day | week | month | year")
    interval_count = serializers.IntegerField()
    current_period = serializers.IntegerField(help_text="Index of the period being (or next to be) paid; 0 = first.")
    current_period_start = serializers.SerializerMethodField()
    current_period_end = serializers.SerializerMethodField()
    next_charge_at = serializers.SerializerMethodField(
        help_text="Unix seconds of the next charge (a period's or a dunning retry's), or null.")
    retries = serializers.IntegerField(help_text="Failed tries of the current period.")
    last_decline_code = serializers.SerializerMethodField()
    last_error = serializers.JSONField(
        allow_null=True, help_text="Why the last charge failed: {code, decline_code, message}; null once paid.")
    latest_payment = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())
    canceled_at = serializers.SerializerMethodField()
    cancel_at_period_end = serializers.BooleanField(
        help_text="Set: it is canceled when the period paid last ends (`cancel_at`), nothing more is charged.")
    cancel_at = serializers.SerializerMethodField(
        help_text="Unix seconds when it will be canceled (the end of the period paid last), or null.")
    created = serializers.SerializerMethodField()

    def get_object(self, sub) -> str:
        return "subscription"

    @staticmethod
    def _ends(sub) -> bool:
        """Active, a period paid, set to cancel at the period's end: `next_charge_at` is when it ends, not a charge."""
        return sub.ends_at_period_end and sub.next_charge_at is not None

    def get_cancel_at(self, sub) -> int | None:
        return created_timestamp(sub.next_charge_at) if self._ends(sub) else None

    def _bound(self, sub, n: int) -> int:
        from payments.recurring import period_start

        return created_timestamp(period_start(sub.anchor, sub.interval, sub.interval_count, n))

    def get_current_period_start(self, sub) -> int:
        return self._bound(sub, sub.current_period)

    def get_current_period_end(self, sub) -> int:
        return self._bound(sub, sub.current_period + 1)

    def get_next_charge_at(self, sub) -> int | None:
        if self._ends(sub):
            return None  # no charge will be made: it ends then (`cancel_at`)
        return created_timestamp(sub.next_charge_at) if sub.next_charge_at else None

    def get_last_decline_code(self, sub) -> str | None:
        return sub.last_decline_code or None

    def get_latest_payment(self, sub) -> str | None:
        # the last charge made (a returned period's retry too, though its period is an older one)
        charge = sub.charges.exclude(payment=None).order_by("-pk").first()
        return charge.payment_id if charge else None

    def get_description(self, sub) -> str | None:
        return sub.description or None

    def get_canceled_at(self, sub) -> int | None:
        return created_timestamp(sub.canceled_at) if sub.canceled_at else None

    def get_created(self, sub) -> int:
        return created_timestamp(sub.created_at)


def render_subscription(sub) -> dict:
    return dict(SubscriptionOutputSerializer(sub).data)
