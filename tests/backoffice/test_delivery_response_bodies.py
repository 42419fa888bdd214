"""What a merchant's webhook endpoint answers is kept on the delivery's attempts and shown on the
delivery's admin page: a card number in that answer is masked before it is stored."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.db import transaction

from payera.events.models import DeliveryAttempt
from payera.events.services import event_record, event_relay, webhook_deliver, webhook_endpoint_create
from tests.backoffice.leaks import card_numbers
from tests.backoffice.staff import make_staff, otp_force_login
from tests.events.receiver import Receiver
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"


@pytest.fixture
def endpoint_answering_a_card_number():
    receiver = Receiver(
        default_status=500,
        response_body=(
            f'{{"error": "order 881 paid with card {PAN} not found", "card": "4111 1111 1111 1111"}}'.encode()
        ),
    )
    yield receiver
    receiver.close()


def test_a_card_number_in_an_endpoints_answer_is_never_stored_or_shown(client, endpoint_answering_a_card_number):
    """Was: the first 2,000 characters of the merchant endpoint's answer were stored as they came
    (`DeliveryAttempt.response_body`) and shown on the delivery's admin page, so an endpoint whose
    error page quoted a card number put it in clear in the database and in the back office. Now
    the answer's card numbers are masked (BIN and last 4) before it is stored; the rest is kept."""
    merchant = MerchantFactory(name="Merchant A")
    webhook_endpoint_create(merchant_id=merchant.pk, url=endpoint_answering_a_card_number.url, enabled_events=["*"])
    with transaction.atomic():
        event = event_record(
            merchant_id=merchant.pk, type="payment.succeeded", data={"id": "pay_x", "object": "payment"}
        )
    [delivery_id] = event_relay(event_id=event.pk)
    webhook_deliver(delivery_id=delivery_id)
    assert len(endpoint_answering_a_card_number.wait_for(1)) == 1
    attempt = DeliveryAttempt.objects.get(delivery_id=delivery_id)
    assert attempt.status_code == 500
    assert "order 881 paid with card 411111******1111 not found" in attempt.response_body
    assert card_numbers(attempt.response_body) == [], attempt.response_body
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.get(f"/admin/events/webhookdelivery/{quote(delivery_id)}/change/")
    assert page.status_code == 200
    assert "411111******1111" in page.content.decode()
    assert card_numbers(page.content.decode()) == []
