"""Reads of the payments app. Every selector takes `merchant`: other merchants' ids are 404."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from payera.core.errors import InvalidRequestError, NotFoundError
from payera.core.ids import opaque_id
from payera.merchants.models import Merchant
from payera.merchants.scoping import owned_get
from payments.models import DS, Customer, Dispute, Payment, PaymentAttempt, PaymentMethod, Refund, Subscription
from payments.models_recurring import SS


class CustomerNotFoundError(NotFoundError):
    default_message = "No such customer."


class PaymentNotFoundError(NotFoundError):
    default_message = "No such payment."


class DisputeNotFoundError(NotFoundError):
    default_message = "No such dispute."


class RefundNotFoundError(NotFoundError):
    default_message = "No such refund."


class BalanceTransactionNotFoundError(NotFoundError):
    default_message = "No such balance transaction."


def customer_get(*, merchant: Merchant, customer_id: str) -> Customer:
    return owned_get(Customer.objects.all(), merchant=merchant, pk=customer_id, error=CustomerNotFoundError)


def customer_list(*, merchant: Merchant) -> QuerySet[Customer]:
    return Customer.objects.for_merchant(merchant)


def _payments() -> QuerySet[Payment]:
    return Payment.objects.select_related("payment_method").prefetch_related(
        Prefetch("attempts", queryset=PaymentAttempt.objects.order_by("sequence"))
    )


def payment_get(*, merchant: Merchant, payment_id: str) -> Payment:
    return owned_get(_payments(), merchant=merchant, pk=payment_id, error=PaymentNotFoundError)


def payment_list(*, merchant: Merchant) -> QuerySet[Payment]:
    return _payments().filter(merchant=merchant)


def refund_get(*, merchant: Merchant, refund_id: str) -> Refund:
    return owned_get(Refund.objects.all(), merchant=merchant, pk=refund_id, error=RefundNotFoundError)


def refund_list(*, merchant: Merchant, payment_id: str | None = None) -> QuerySet[Refund]:
    qs = Refund.objects.for_merchant(merchant)
    if payment_id:
        qs = qs.filter(payment_id=payment_id)
    return qs


def dispute_get(*, merchant: Merchant, dispute_id: str) -> Dispute:
    return owned_get(Dispute.objects.all(), merchant=merchant, pk=dispute_id, error=DisputeNotFoundError)


def dispute_list(*, merchant: Merchant, payment_id: str | None = None, status: str | None = None) -> QuerySet[Dispute]:
    qs = Dispute.objects.for_merchant(merchant)
    if payment_id:
        qs = qs.filter(payment_id=payment_id)
    if status:
        if status not in DS.values:  # a misspelt status must not read as "no disputes to answer"
            raise InvalidRequestError(f"status must be one of {', '.join(DS.values)}.", param="status")
        qs = qs.filter(status=status)
    return qs


class PaymentMethodNotFoundError(NotFoundError):
    default_message = "No such payment method."


class SubscriptionNotFoundError(NotFoundError):
    default_message = "No such subscription."


def _methods() -> QuerySet[PaymentMethod]:
    return PaymentMethod.objects.prefetch_related("credentials")


def payment_method_get(*, merchant: Merchant, payment_method_id: str) -> PaymentMethod:
    return owned_get(_methods(), merchant=merchant, pk=payment_method_id, error=PaymentMethodNotFoundError)


def payment_method_list(*, merchant: Merchant, customer_id: str | None = None,
                        include_detached: bool = False) -> QuerySet[PaymentMethod]:
    """Every payment method of the merchant that GET /v1/payment_methods/{id} answers (saved to a
    customer or used once), newest first; `customer_id` keeps that customer's (404 if unknown)."""
    if customer_id:
        return customer_payment_method_list(merchant=merchant, customer_id=customer_id,
                                            include_detached=include_detached)
    qs = _methods().filter(merchant=merchant)
    return qs if include_detached else qs.filter(detached_at=None)


def customer_payment_method_list(*, merchant: Merchant, customer_id: str, fingerprint: str | None = None,
                                 include_detached: bool = False) -> QuerySet[PaymentMethod]:
    """The customer's saved methods, newest first; `fingerprint` (as the API shows it) keeps the
    duplicates of one card number."""
    from payments.serializers_recurring import public_fingerprint

    customer = customer_get(merchant=merchant, customer_id=customer_id)
    qs = _methods().filter(merchant=merchant, customer=customer)
    if not include_detached:
        qs = qs.filter(detached_at=None)
    if fingerprint:
        # a customer holds few methods: compare the merchant-scoped fingerprint in Python
        ids = [pm.pk for pm in qs.only("id", "merchant_id", "fingerprint") if public_fingerprint(pm) == fingerprint]
        qs = qs.filter(pk__in=ids)
    return qs


def subscription_get(*, merchant: Merchant, subscription_id: str) -> Subscription:
    return owned_get(Subscription.objects.all(), merchant=merchant, pk=subscription_id,
                     error=SubscriptionNotFoundError)


def subscription_list(*, merchant: Merchant, customer: str | None = None, status: str | None = None
                      ) -> QuerySet[Subscription]:
    qs = Subscription.objects.for_merchant(merchant)
    if customer:  # a customer the merchant does not have is 404 (param customer), never "none"
        if not Customer.objects.filter(merchant=merchant, pk=customer).exists():
            raise CustomerNotFoundError(param="customer")
        qs = qs.filter(customer_id=customer)
    if status:
        if status not in SS.values:  # a misspelt status must not read as "none are past due"
            raise InvalidRequestError(f"status must be one of {', '.join(SS.values)}.", param="status")
        qs = qs.filter(status=status)
    return qs
def settlement_tables() -> dict[str, str]:
    """The tables reconciliation's matching SQL reads (read only, set-based): captures, refunds,
    disputes and attempts, by role. Reads across every merchant: reconciliation is PSP-wide."""
    from payments.models import Capture

    return {
        "attempt": PaymentAttempt._meta.db_table,
        "capture": Capture._meta.db_table,
        "refund": Refund._meta.db_table,
        "dispute": Dispute._meta.db_table,
    }


# Journals on a merchant's balance whose reference names only the merchant's own public objects
# (att_, re_, dp_, bk_, po_ ids, its own merchant id and a date) and whose memo is built from them:
# a merchant sees them as stored. Any other journal (a staff adjustment such as a suspense move,
# `recon_suspense:<discrepancy pk>:<n>` with the staff's reason as memo) shows the merchant an opaque
# id of the journal and a fixed description; staff keep the internal reference and memo (admin).
PUBLIC_JOURNAL_PREFIXES = frozenset({
    "capture", "capture_fee", "refund", "refund_fee", "refund_reversal", "refund_fee_reversal", "chargeback",
    "chargeback_fee", "chargeback_won", "chargeback_fee_won", "escrow_release", "escrow_release_unrefunded",
    "payout", "payout_paid", "payout_failed", "payout_returned", "settlement",
})  # fmt: skip


def balance_transaction_public_text(*, journal_id: int, reference: str, memo: str) -> tuple[str, str]:
    """(reference, description) of a balance transaction as its merchant sees them
    (GET /v1/balance_transactions, merchant statements)."""
    if reference.partition(":")[0] in PUBLIC_JOURNAL_PREFIXES:
        return reference, memo
    description = "Reconciliation adjustment" if reference.startswith("recon_") else "Adjustment"
    return opaque_id("jrn", journal_id), description
