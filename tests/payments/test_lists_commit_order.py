"""`GET /v1/payments`, `/v1/refunds`, `/v1/disputes`, `/v1/customers`, `/v1/payouts`, `/v1/bookings`,
`/v1/subscriptions` in an order no later commit can slip into (session 19, h19e; as `/v1/events` in session 17);
`/v1/payment_methods`, `/v1/customers/{id}/payment_methods` and `/v1/webhook_endpoints` too (session 20, h20g).

What was wrong: each list is newest first by (`created_at`, id) over every committed row, and
`created_at` was the application's clock (`default=timezone.now`), read when the row was built,
inside a transaction that commits later (possibly much later). A row created in a transaction still
open while a later row committed got the older stamp and so appeared *below* rows a merchant had
already listed: a merchant syncing a list by polling (newest first, down to the newest id it
already has) never saw it. Real threads, real PostgreSQL: one row created in a transaction held
open while another commits and the merchant lists.

Now `created_at` of these rows is the database's clock read after the creating transaction holds a
transaction id (`payera.core.horizon.CommitStampField`, in the row's own INSERT), and a first page
lists only rows stamped before `committed_before()`."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest
from django.db import connection, transaction

from payera.merchants.models import Merchant
from tests.helpers import held_open, walk_list
from tests.merchants.tenant_routes import _booking, _dispute, _payment, _refund

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent commits: PostgreSQL"),
]

_days = itertools.count()


def _customer(merchant: Merchant) -> str:
    from payments.models import Customer

    return Customer.objects.create(merchant=merchant, email="poll@example.com").id


def _payout(merchant: Merchant) -> str:
    from reconciliation.models import Payout

    payout = Payout(merchant=merchant, currency="EUR", amount=100, available_before=100,
                    payout_date=dt.date(2026, 1, 1) + dt.timedelta(days=next(_days)))
    payout.journal_reference = f"payout:{payout.id}"
    payout.save()
    return payout.id


def _saved_to(merchant: Merchant) -> str:
    """The one customer of the merchant the payment method lists' rows are saved to."""
    from payments.models import Customer

    return Customer.objects.get_or_create(merchant=merchant, email="saved@example.com")[0].id


def _payment_method(merchant: Merchant) -> str:
    from payments.models import PaymentMethod

    return PaymentMethod.objects.create(merchant=merchant, customer_id=_saved_to(merchant), card_brand="visa",
                                        card_last4="4242", card_exp_month=12, card_exp_year=2034).id


def _webhook_endpoint(merchant: Merchant) -> str:
    from django.utils import timezone

    from payera.events.models import WebhookEndpoint

    now = timezone.now()  # what webhook_endpoint_create stamped before session 20 (its clock.now())
    return WebhookEndpoint.objects.create(merchant_id=merchant.id, url="https://example.com/hook",
                                          secret_ciphertext="x", created_at=now, updated_at=now).id


def _subscription(merchant: Merchant) -> str:
    from django.utils import timezone

    from payments.models import PaymentMethod, Subscription

    pm = PaymentMethod.objects.create(merchant=merchant, customer_id=_customer(merchant), card_brand="visa",
                                      card_last4="4242", card_exp_month=12, card_exp_year=2034)
    return Subscription.objects.create(merchant=merchant, customer_id=pm.customer_id, payment_method=pm, amount=900,
                                       currency="EUR", interval="month", anchor=timezone.now()).id


LISTS = {
    "payments": _payment,
    "refunds": _refund,
    "disputes": _dispute,
    "customers": _customer,
    "payouts": _payout,
    "bookings": _booking,
    "subscriptions": _subscription,
    "payment_methods": _payment_method,
    "customers/payment_methods": _payment_method,
    "webhook_endpoints": _webhook_endpoint,
}

# a list whose path names an object of the merchant's
PATHS = {"customers/payment_methods": lambda merchant: f"/v1/customers/{_saved_to(merchant)}/payment_methods"}


def _created(make, merchant: Merchant) -> str:
    with transaction.atomic():
        return make(merchant)


@pytest.mark.parametrize("resource", list(LISTS))
def test_a_row_committed_late_is_never_listed_below_rows_already_listed(make_merchant_client, resource):
    merchant, client = make_merchant_client()
    make = LISTS[resource]
    path = PATHS[resource](merchant) if resource in PATHS else f"/v1/{resource}"
    first = _created(make, merchant)
    late: list[str] = []
    with held_open(lambda: late.append(make(merchant))):  # created (stamped) now, committed later
        time.sleep(0.01)
        third = _created(make, merchant)  # committed while the second is still open
        first_sync = walk_list(client, path)

    # the merchant polls again, down to the newest row it already has
    known = {row["id"] for row in first_sync}
    second_sync = walk_list(client, path, stop_at=known)
    synced = [row["id"] for row in first_sync + second_sync]
    assert sorted(synced) == sorted([first, late[0], third]), (first_sync, second_sync)

    # once everything has committed the whole list is there, newest (by stamp) first, each once,
    # in the order of the `created` each row shows
    full = walk_list(client, path, limit=100)
    assert [row["id"] for row in full] == [third, late[0], first]
    assert [row["created"] for row in full] == sorted((row["created"] for row in full), reverse=True)


def test_a_method_committed_while_the_fingerprint_is_matched_is_never_listed_below_methods_already_listed(
        make_merchant_client, monkeypatch):
    """`?fingerprint=` of a customer's methods is matched in Python over the methods committed when
    its query ran, before the page's own query: a method that committed just after that match but
    was stamped below the horizon read after it was left out of the first page, while methods
    stamped after it were listed, and the next poll found it below them (review r20g). The horizon
    is now read before the match."""
    import payments.serializers_recurring as recurring
    from payments.models import PaymentMethod

    merchant, client = make_merchant_client()
    customer = _saved_to(merchant)

    def make() -> str:
        return PaymentMethod.objects.create(merchant=merchant, customer_id=customer, fingerprint="same-card",
                                            card_brand="visa", card_last4="4242", card_exp_month=12,
                                            card_exp_year=2034).id

    first = _created(lambda _m: make(), merchant)
    late: list[str] = []
    with held_open(lambda: late.append(make())) as commit_late:  # stamped now, committed when called
        time.sleep(0.01)
        third = _created(lambda _m: make(), merchant)  # committed while the second is still open
        fingerprint = recurring.public_fingerprint(PaymentMethod.objects.get(pk=first))
        matched = recurring.public_fingerprint

        def match_then_commit(pm):  # the late method commits right after the match read the methods
            commit_late()
            return matched(pm)

        monkeypatch.setattr(recurring, "public_fingerprint", match_then_commit)
        path = f"/v1/customers/{customer}/payment_methods?fingerprint={fingerprint}&limit=100"
        first_sync = client.get(path).json()["data"]
        monkeypatch.setattr(recurring, "public_fingerprint", matched)

    known = {row["id"] for row in first_sync}
    second_sync = list(itertools.takewhile(lambda row: row["id"] not in known, client.get(path).json()["data"]))
    synced = [row["id"] for row in first_sync + second_sync]
    assert sorted(synced) == sorted([first, late[0], third]), (first_sync, second_sync)
    assert [row["id"] for row in client.get(path).json()["data"]] == [third, late[0], first]
