"""Saved payment methods: detach (crypto-shred the number, keep the masked data)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from payera.core.db import outside_transaction
from payera.core.errors import InvalidRequestError, NotFoundError, PayeraError
from payera.events.services import event_record
from payera.merchants.models import Merchant
from payera.secrets.services import key_delete_material
from payments.models import PaymentMethod, PaymentMethodCredential, Subscription, SubscriptionStatus
from payments.serializers_recurring import render_payment_method
from payments.services.methods import mandate_end

logger = logging.getLogger("payera.payments")


REVOKED_BY_DETACH = "revoked by the merchant (payment method detached)"


class PaymentMethodNotFoundError(NotFoundError):
    default_message = "No such payment method."


class PaymentMethodInUseError(PayeraError):
    """A live subscription charges the method: detaching it would make its next charge fail."""

    type = "invalid_request_error"
    code = "payment_method_in_use"
    http_status = 400  # CONTRACT: invalid_request_error is 400/404


# the subscriptions that will charge their method again (an `unpaid` one charges nothing until it
# is given a method, checked then; a `canceled` one never)
LIVE_SUBSCRIPTION = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


def method_lock_for_subscription(merchant: Merchant, pm_id: object) -> None:
    """In the transaction that points a subscription at `pm_id` (create, update), before the method
    is read and checked: the method's row lock (FOR UPDATE, this merchant's; none for an id that is
    not), the one the detach takes first, so a detach and a subscription taking the method at the
    same moment are ordered: the detach sees the subscription (400 `payment_method_in_use`), or the
    subscription sees the detach (400 `payment_method_detached`, never a check failing half-way
    through the detach's changes, such as `payment_method_not_reusable` for its deleted credentials).
    Only the lock: the caller's check, read after it, answers (another customer's method is a 404
    before it is a detached one)."""
    if not isinstance(pm_id, str):
        return
    list(PaymentMethod.objects.select_for_update().filter(pk=pm_id, merchant=merchant).values_list("pk", flat=True))


def payment_method_detach(*, merchant: Merchant, payment_method_id: str, actor: str = "api") -> PaymentMethod:
    """Detach a saved method from its customer, for good: the encrypted number (card PAN or IBAN)
    and the PSP credentials are deleted from our tables (committed first), then the card's own
    key is destroyed in the secrets backend (crypto-shred), so any copy of the ciphertext (a
    backup, a replica) can never be read again. Only the masked data stays (brand, last 4,
    expiry, fingerprint). A SEPA method's mandate is revoked with it (`mandate_end`: `inactive`,
    event `payment_method.mandate_inactive`). Detaching again answers the detached method and shreds again (a shred
    that failed, 503, completes on the retry). A later charge with it is a 400."""
    pm = _detach_record(merchant=merchant, payment_method_id=payment_method_id, actor=actor)
    if pm.pan_key:
        with outside_transaction():
            key_delete_material(key=pm.pan_key)
    return pm


@transaction.atomic(durable=True)
def _detach_record(*, merchant: Merchant, payment_method_id: str, actor: str) -> PaymentMethod:
    pm = PaymentMethod.objects.select_for_update().filter(pk=payment_method_id, merchant=merchant).first() \
        if isinstance(payment_method_id, str) else None
    if pm is None:
        raise PaymentMethodNotFoundError()
    if pm.customer_id is None:
        raise InvalidRequestError("This payment method is not saved to a customer.", param="payment_method",
                                  code="payment_method_not_attached")
    if pm.detached_at is not None:
        mandate_end(pm=pm, reason=REVOKED_BY_DETACH)  # one detached before detaching revoked it
        return pm
    using = list(Subscription.objects.filter(payment_method=pm, status__in=LIVE_SUBSCRIPTION)
                 .order_by("created_at", "id").values_list("pk", flat=True)[:20])
    if using:
        raise PaymentMethodInUseError(
            f"This payment method is used by subscription{'s' if len(using) > 1 else ''} {', '.join(using)}: "
            "cancel them or give them another payment method first.")
    pm.detached_at = timezone.now()
    pm.pan_ciphertext = ""
    pm.iban_ciphertext = ""
    pm.save(update_fields=["detached_at", "pan_ciphertext", "iban_ciphertext"])
    PaymentMethodCredential.objects.filter(payment_method=pm).delete()
    mandate_end(pm=pm, reason=REVOKED_BY_DETACH)  # a SEPA method's mandate: revoked with it
    event_record(merchant_id=merchant.id, type="payment_method.detached", data=render_payment_method(pm))
    logger.info("payment method %s detached by %s", pm.id, actor)
    return pm
