"""A payment page's "Replay" replays that payment's webhook deliveries only (docs/backoffice.md).

The replay URL under a payment (`/admin/payments/payment/<id>/deliveries/<delivery>/replay/`)
accepted any delivery of the same merchant: another payment's delivery, or one about no payment
at all, was replayed and its `StaffAction` recorded as if it were about the payment on whose page
it was asked, so the payment page's story and the action log told a wrong story. Now a delivery
of an event that is not about the payment (itself, its refunds or disputes) answers 404 and
nothing is replayed. (The page's Replay link now quotes the delivery's id as the admin quotes
ids, and the view unquotes it.)"""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from payera.backoffice.models import StaffAction
from payera.events.models import DeliveryStatus, WebhookDelivery
from tests.backoffice.payments import APPROVED, pay
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db

PAYMENTS = "/admin/payments/payment/"
REASON = {"reason": "merchant asked again, ticket 88"}


def replay_url(payment, delivery_id: str, *, quoted: bool = True) -> str:
    delivery = quote(delivery_id) if quoted else delivery_id
    return f"{PAYMENTS}{quote(payment.pk)}/deliveries/{delivery}/replay/"


def dead(delivery_id: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=DeliveryStatus.DEAD, next_attempt_at=None)


def deliveries_of(client, payment) -> list[str]:
    story = client.get(f"{PAYMENTS}{quote(payment.pk)}/change/").context["story"]
    return [d.pk for d in story.deliveries]


def test_a_delivery_of_another_payment_of_the_same_merchant_is_not_replayed(client, role_users, psp_settings, world):
    merchant = world["A"].merchant
    first = pay(merchant, amount=1_000, number=APPROVED, connectors=["alpha"])
    second = pay(merchant, amount=2_000, number=APPROVED, connectors=["alpha"])
    otp_force_login(client, role_users["operations"])
    mine, theirs = deliveries_of(client, first), deliveries_of(client, second)
    assert mine and theirs and not set(mine) & set(theirs)
    unrelated = world["A"].dead_delivery.pk  # the merchant's dead letter, about no payment of these
    for other in (theirs[0], unrelated):
        dead(other)
        for quoted in (True, False):
            assert client.get(replay_url(first, other, quoted=quoted)).status_code == 404
            assert client.post(replay_url(first, other, quoted=quoted), REASON).status_code == 404
        delivery = WebhookDelivery.objects.get(pk=other)
        assert (delivery.status, delivery.replay_count) == (DeliveryStatus.DEAD, 0)
    assert not StaffAction.objects.exists()

    # its own deliveries still replay from its page (the page's button, whose link quotes the
    # delivery's id as the admin quotes ids), and the other's from the other's page
    dead(mine[0])
    page = client.get(f"{PAYMENTS}{quote(first.pk)}/change/").content.decode()
    assert f'href="{replay_url(first, mine[0])}"' in page
    assert client.post(replay_url(first, mine[0]), REASON).status_code == 302
    assert client.post(replay_url(second, theirs[0], quoted=False), REASON).status_code == 302
    assert {d.replay_count for d in WebhookDelivery.objects.filter(pk__in=[mine[0], theirs[0]])} == {1}
