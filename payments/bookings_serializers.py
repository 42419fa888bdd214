"""The booking object (CONTRACT "Bookings"): the API's answer and the `booking.*` events' data."""

from __future__ import annotations

from rest_framework import serializers

from payera.core.db import created_timestamp


class BookingOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    status = serializers.CharField(help_text="pending | held | confirmed | completed | canceled | expired | failed")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    reference = serializers.CharField(help_text="The merchant's own booking reference.")
    payment = serializers.CharField(source="payment_id", help_text="The manual-capture payment underneath.")
    hold_expires_at = serializers.SerializerMethodField(help_text="Unix seconds: an unconfirmed hold is voided then.")
    amount_captured = serializers.IntegerField(help_text="Captured into escrow by confirm (gross).")
    fee = serializers.IntegerField(help_text="The merchant's fee on the capture (a refund returns its share).")
    amount_escrowed = serializers.IntegerField(help_text="Held in the merchant's escrow for this booking (net of fee), "
                                                         "including what a pending refund out of it will take.")
    amount_released = serializers.IntegerField(help_text="Released to the merchant's pending balance (net of fee).")
    amount_refunded = serializers.IntegerField(help_text="Refunded to the shopper out of escrow (gross).")
    refund = serializers.CharField(source="refund_id", allow_null=True, help_text="The refund out of escrow, if any.")
    dispute = serializers.CharField(
        source="dispute_id", allow_null=True,
        help_text="The dispute (chargeback) that ended a confirmed booking's escrow: it is then canceled.")
    next_action = serializers.SerializerMethodField()
    last_error = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())
    confirmed = serializers.SerializerMethodField()
    closed = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()

    def get_object(self, obj) -> str:
        return "booking"

    def get_hold_expires_at(self, obj) -> int:
        return created_timestamp(obj.hold_expires_at)

    def get_next_action(self, obj) -> dict | None:
        """The payment's 3-D Secure redirect while the booking is pending."""
        return obj.payment.next_action if obj.status == "pending" else None

    def get_last_error(self, obj) -> dict | None:
        """Why the authorization failed (the payment's `last_error`)."""
        return obj.payment.last_error if obj.status == "failed" else None

    def get_confirmed(self, obj) -> int | None:
        return created_timestamp(obj.confirmed_at) if obj.confirmed_at else None

    def get_closed(self, obj) -> int | None:
        return created_timestamp(obj.closed_at) if obj.closed_at else None

    def get_created(self, obj) -> int:
        return created_timestamp(obj.created_at)


def render_booking(booking) -> dict:
    return dict(BookingOutputSerializer(booking).data)
