"""A `return_url` Payera cannot send the shopper back to is refused when the payment is created.

What was wrong: `return_url` was checked by DRF's URLField, whose validator takes `ftp://` and
`ftps://` as well as `http(s)://`, but the shopper's return (`GET /payments/return/<id>`, after
3-D Secure or the bank's page) redirects with Django's `HttpResponseRedirect`, which refuses
`ftps` (DisallowedRedirect): the shopper came back from the challenge, the outcome was recorded,
and they got a bare "400 Bad Request" page instead of the merchant's shop. Only a web page can be
returned to, so `return_url` (payments and bookings) must be http or https: 400
`invalid_request_error` with `param: return_url`, before anything is stored or sent.
"""

from __future__ import annotations

import time

import pytest

from payments.models import Payment

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.mark.parametrize("url", ["ftps://shop.example/done", "ftp://shop.example/done"])
def test_a_return_url_that_is_not_a_web_page_is_400_before_anything_is_stored(
    psp_settings, merchant_client, merchant, url
):
    r = merchant_client.post(
        "/v1/payments",
        {"amount": 1000, "currency": "EUR", "payment_method_data": CARD, "return_url": url},
        format="json",
    )
    assert r.status_code == 400, r.content
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == "return_url"
    assert not Payment.objects.filter(merchant=merchant).exists()


@pytest.mark.parametrize("url", ["ftps://shop.example/done", "ftp://shop.example/done"])
def test_a_booking_return_url_that_is_not_a_web_page_is_400(psp_settings, merchant_client, url):
    r = merchant_client.post(
        "/v1/bookings",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": CARD,
            "reference": "r1",
            "hold_expires_at": int(time.time()) + 3600,
            "return_url": url,
        },
        format="json",
    )
    assert r.status_code == 400, r.content
    assert r.json()["error"]["param"] == "return_url"
