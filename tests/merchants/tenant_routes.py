"""Tenant isolation registry: one entry per named route under /v1/.

tests/merchants/test_tenant_isolation.py walks the URLconf and FAILS for any /v1/ route that has
no entry here, so every new endpoint is covered the day it is added. For a route serving objects
a merchant owns, give `Owned(create=...)`: a function that makes one such object for the given
merchant (through services/factories) and returns its id — or, for a route with several URL
parameters, a dict of URL kwargs. The test then proves, for every method of the view:

- a route with parameters: merchant A gets 404 for merchant B's object (and 200 on GET of its own);
- a list route (GET, no parameters): A's list shows A's object and never B's, and B's id is no
  cursor for A.

For a POST action on an object (`/v1/payments/{id}/capture`) give `post_body` if an empty body
is not valid; views must look the object up through a merchant-scoped selector. For a route
whose body names another object (`POST /v1/payments` with `customer`), list
`references=(Ref("customer-detail", lambda cus: {..., "customer": cus}),)`: A naming B's object
must get 404. A route that serves no merchant-owned ids (e.g. `/v1/balance`) is `NotOwned("why")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from payera.merchants.models import Merchant


@dataclass(frozen=True)
class Ref:
    """A body that names an object made by `TENANT_ROUTES[target].create` (its id is passed in)."""

    target: str
    body: Callable[[str], dict]
    method: str = "post"


@dataclass(frozen=True)
class Owned:
    create: Callable[[Merchant], str | dict[str, str]]
    post_body: dict = field(default_factory=dict)
    references: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class NotOwned:
    reason: str


def _customer(merchant: Merchant) -> str:
    from payments.services import customer_create

    return customer_create(merchant=merchant, email="tenant@example.com").id


def _event(merchant: Merchant) -> str:
    from django.db import transaction

    from payera.events.services import event_record

    with transaction.atomic():
        return event_record(merchant_id=merchant.id, type="payout.created", data={"id": "cus_x"}).id


def _webhook_endpoint(merchant: Merchant) -> str:
    from payera.events.services import webhook_endpoint_create

    return webhook_endpoint_create(
        merchant_id=merchant.id, url="http://127.0.0.1:9/hook", enabled_events=["*"]
    ).endpoint.id


def _payment(merchant: Merchant) -> str:
    """A payment awaiting confirmation (no PSP involved), as payment_create(confirm=False) leaves it."""
    from payments.models import Payment, PaymentMethod

    pm = PaymentMethod.objects.create(merchant=merchant, card_brand="visa", card_last4="4242", card_exp_month=12,
                                      card_exp_year=2034)
    return Payment.objects.create(merchant=merchant, amount=1000, currency="EUR", payment_method=pm).id


def _refund(merchant: Merchant) -> str:
    from payments.models import PaymentAttempt, Refund

    payment_id = _payment(merchant)
    attempt = PaymentAttempt.objects.create(payment_id=payment_id, merchant=merchant, sequence=1, connector="alpha",
                                            amount=1000, currency="EUR")
    return Refund.objects.create(merchant=merchant, payment_id=payment_id, attempt=attempt, amount=100,
                                 currency="EUR").id


def _dispute(merchant: Merchant) -> str:
    from payments.models import Dispute, PaymentAttempt

    payment_id = _payment(merchant)
    attempt = PaymentAttempt.objects.create(payment_id=payment_id, merchant=merchant, sequence=1, connector="alpha",
                                            amount=1000, currency="EUR")
    return Dispute.objects.create(merchant=merchant, payment_id=payment_id, attempt=attempt, connector="alpha",
                                  psp_dispute_id=f"dp_psp_{payment_id}", amount=1000, currency="EUR",
                                  reason="fraudulent").id


def _saved_method(merchant: Merchant) -> str:
    """A card saved to a customer, with a PSP credential (no PSP call: rows only)."""
    from payments.models import PaymentMethod, PaymentMethodCredential

    pm = PaymentMethod.objects.create(merchant=merchant, customer_id=_customer(merchant), card_brand="visa",
                                      card_last4="4242", card_exp_month=12, card_exp_year=2034, fingerprint="f" * 64)
    PaymentMethodCredential.objects.create(payment_method=pm, connector="alpha", psp_token="tok_tenant",
                                           network_transaction_id="NTIDTENANT")
    return pm.id


def _subscription(merchant: Merchant) -> str:
    from django.utils import timezone

    from payments.models import PaymentMethod, Subscription

    pm = PaymentMethod.objects.get(pk=_saved_method(merchant))
    return Subscription.objects.create(merchant=merchant, customer_id=pm.customer_id, payment_method=pm, amount=900,
                                       currency="EUR", interval="month", anchor=timezone.now()).id
def _booking(merchant: Merchant) -> str:
    """A booking whose payment awaits confirmation (no PSP involved)."""
    import datetime as dt

    from django.utils import timezone

    from payments.models import Booking

    payment_id = _payment(merchant)
    return Booking.objects.create(merchant=merchant, payment_id=payment_id, amount=1000, currency="EUR",
                                  reference="tenant", hold_expires_at=timezone.now() + dt.timedelta(hours=1)).id


def _booking_body(cus: str) -> dict:
    import time

    return {"amount": 1000, "currency": "EUR", "customer": cus, "payment_method_data": CARD, "reference": "tenant",
            "hold_expires_at": int(time.time()) + 3600}


CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}

def _payout(merchant: Merchant) -> str:
    from tests.reconciliation.helpers import make_payout

    return make_payout(merchant).id


def _balance_transaction(merchant: Merchant) -> str:
    """A capture posted to the merchant's pending balance: its ledger entry's `txn_` id."""
    import uuid

    from django.utils import timezone

    from ledger import services
    from ledger.selectors import balance_transaction_list
    from ledger.types import Accounts, PostingLine

    services.journal_post(reference=f"capture:{uuid.uuid4().hex}", kind="capture", lines=(
        PostingLine.debit(Accounts.psp_receivable("alpha", "EUR"), 500),
        PostingLine.credit(Accounts.merchant_pending(merchant.id, "EUR"), 500),
    ), occurred_at=timezone.now())
    from payera.core.ids import opaque_id

    return opaque_id("txn", balance_transaction_list(owner=merchant.id).first().id)


TENANT_ROUTES: dict[str, Owned | NotOwned] = {
    "event-list": Owned(create=_event),
    "event-detail": Owned(create=_event),
    "webhook-endpoint-list": Owned(create=_webhook_endpoint),
    "webhook-endpoint-detail": Owned(create=_webhook_endpoint),
    "webhook-endpoint-roll-secret": Owned(create=_webhook_endpoint),
    "customer-list": Owned(create=_customer),
    "customer-detail": Owned(create=_customer),
    "payment-list": Owned(
        create=_payment,
        references=(
            Ref("customer-detail", lambda cus: {"amount": 1000, "currency": "EUR", "customer": cus,
                                                "payment_method_data": CARD}),
        ),
    ),
    "payment-detail": Owned(create=_payment),
    "payment-confirm": Owned(create=_payment),
    "payment-capture": Owned(create=_payment),
    "payment-cancel": Owned(create=_payment),
    "refund-list": Owned(
        create=_refund, references=(Ref("payment-detail", lambda pay: {"payment": pay, "amount": 100}),)
    ),
    "refund-detail": Owned(create=_refund),
    "dispute-list": Owned(create=_dispute),
    "dispute-detail": Owned(create=_dispute),
    "dispute-evidence": Owned(create=_dispute, post_body={"text": "Signed delivery receipt."}),
    "customer-payment-method-list": Owned(create=_customer),
    "payment-method-list": Owned(create=_saved_method),
    "payment-method-detail": Owned(create=_saved_method),
    "payment-method-detach": Owned(create=_saved_method),
    "subscription-list": Owned(
        create=_subscription,
        references=(
            Ref("customer-detail", lambda cus: {"customer": cus, "payment_method": "pm_x", "amount": 900,
                                                "currency": "EUR", "interval": "month"}),
        ),
    ),
    "subscription-detail": Owned(
        create=_subscription,
        references=(Ref("payment-method-detail", lambda pm: {"payment_method": pm}),),
    ),
    "subscription-cancel": Owned(create=_subscription),
    "booking-list": Owned(create=_booking, references=(Ref("customer-detail", _booking_body),)),
    "booking-detail": Owned(create=_booking),
    "booking-confirm": Owned(create=_booking),
    "booking-complete": Owned(create=_booking),
    "booking-cancel": Owned(create=_booking),
    "balance": NotOwned("the caller's own balance: no object ids (owner = the authenticated merchant)"),
    "balance-transaction-list": NotOwned("the caller's own ledger entries; cursors: tests/ledger/test_balance_api.py"),
    "balance-transaction-detail": Owned(create=_balance_transaction),
    "payout-list": Owned(create=_payout),
    "payout-detail": Owned(create=_payout),
}
