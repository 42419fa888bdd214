"""A card number typed into the back office (a shopper reads theirs out to support, who pastes it
into a search box) is never shown back: every changelist redirects to itself with the number
masked, and the payments search finds the payment by that masked number (BIN and last 4)."""

from __future__ import annotations

import pytest
from django.contrib import admin

from tests.backoffice.leaks import leaks
from tests.backoffice.payments import pay
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
MASKED = "411111******1111"


def test_no_changelist_renders_a_searched_card_number(client):
    otp_force_login(client, make_staff("root", superuser=True))
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url, {"q": PAN, "o": "1"})
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{url}?") and PAN not in response["Location"], url
        page = client.get(response["Location"])
        assert page.status_code == 200, url
        assert leaks(page.content.decode()) == [], url


def test_the_payments_search_finds_a_payment_by_the_masked_card_number(client, psp_settings, world):
    paid = pay(world["A"].merchant, amount=1500, number=PAN, connectors=["alpha"])
    pay(world["A"].merchant, amount=1600, number="4242424242424242", connectors=["alpha"])
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.get("/admin/payments/payment/", {"q": "4111 1111 1111 1111"}, follow=True)
    assert [obj.pk for obj in page.context["cl"].result_list] == [paid.pk]
    assert MASKED in page.content.decode() and leaks(page.content.decode()) == []


def test_a_query_is_redirected_at_most_once(client):
    """Masking reaches its fixed point in one call: the masked query is not redirected again (a
    fuzzed string was, up to 4 times)."""
    otp_force_login(client, make_staff("root", superuser=True))
    first = client.get("/admin/payments/payment/", {"q": "2353 6011111111111117 617851754 6587405756405 2146990217"})
    assert first.status_code == 302 and "6011111111111117" not in first["Location"]
    assert client.get(first["Location"]).status_code == 200


def test_a_numeric_psp_reference_that_is_no_card_number_is_searched_as_it_is(client, psp_settings, world):
    """An Adyen-like 16-digit reference passing the Luhn check but starting like no card scheme is
    neither masked nor redirected: the attempts search finds it."""
    from payments.models import PaymentAttempt

    reference = "8815123456789013"
    paid = pay(world["A"].merchant, amount=1500, number="4242424242424242", connectors=["alpha"])
    attempt = PaymentAttempt.objects.get(payment=paid, status="captured")
    PaymentAttempt.objects.filter(pk=attempt.pk).update(psp_reference=reference)
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.get("/admin/payments/paymentattempt/", {"q": reference})
    assert page.status_code == 200, page.get("Location")
    assert [obj.pk for obj in page.context["cl"].result_list] == [attempt.pk]
