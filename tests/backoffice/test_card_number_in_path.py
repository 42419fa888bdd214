"""A card number in an admin page's path (pasted into the address bar as an object id) is never
shown back: Django's admin says "… with ID “<the id>” doesn't exist", and its delete, history and
custom pages, redirects and 404s carry the path. Every admin URL that takes a path argument, on
every registered ModelAdmin, redirects first to the path with the number masked."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from tests.backoffice.leaks import leaks
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
MASKED = "411111******1111"


def _walk(client, url: str) -> list[tuple[int, str, str]]:
    """Every response from `url` on, following redirects (at most 5): status, Location, body."""
    seen = []
    for _ in range(5):
        response = client.get(url)
        location = response.get("Location", "")
        seen.append((response.status_code, location, response.content.decode(errors="replace")))
        if response.status_code not in (301, 302) or not location.startswith("/"):
            break
        url = location
    return seen


def _leaked(seen) -> list[str]:
    return [
        f"{status} {location}"
        for status, location, body in seen
        if PAN in location or PAN in body or leaks(body) or leaks(location)
    ]


def _object_urls() -> list[str]:
    """Every URL of every registered ModelAdmin that takes arguments, with the card number in each."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        urls.append(f"/admin/{model._meta.app_label}/{model._meta.model_name}/{PAN}/")  # Django's unnamed redirect
        for pattern in model_admin.urls:
            if not pattern.pattern.converters or not pattern.name:
                continue
            try:
                urls.append(reverse(f"admin:{pattern.name}", kwargs=dict.fromkeys(pattern.pattern.converters, PAN)))
            except NoReverseMatch:
                continue
    return urls


def test_every_admin_url_of_every_model_masks_a_card_number_in_its_path(client):
    otp_force_login(client, make_staff("root", superuser=True))
    urls = _object_urls()
    assert len(urls) >= 4 * len(admin.site._registry)  # change, history, delete and the bare id, at least
    assert "/admin/payments/payment/4111111111111111/refund/" in urls
    for url in urls:
        seen = _walk(client, url)
        assert seen[0][0] == 302 and MASKED in seen[0][1] and PAN not in seen[0][1], url
        assert _leaked(seen) == [], url


def test_the_does_not_exist_message_shows_the_masked_id(client):
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.get(f"/admin/payments/payment/{PAN}/change/", follow=True)
    text = page.content.decode()
    assert f"ID “{MASKED}” doesn’t exist" in text
    assert PAN not in text and leaks(text) == []


@pytest.mark.parametrize("typed", ["4111-1111-1111-1111", "4111 1111 1111 1111", "4111%201111%201111%201111"])
def test_a_split_card_number_in_the_path_is_masked(client, typed):
    otp_force_login(client, make_staff("root", superuser=True))
    seen = _walk(client, f"/admin/payments/refund/{typed}/change/")
    assert seen[0][1] == f"/admin/payments/refund/{MASKED}/change/"
    assert _leaked(seen) == [] and all("4111 1111" not in body for _, _, body in seen)


def test_unknown_admin_pages_and_the_sign_in_page_mask_it(client):
    """The catch-all 404 and, signed out, the sign-in redirect (whose `next` the form renders)."""
    assert _leaked(_walk(client, f"/admin/payments/payment/{PAN}/change/")) == []
    assert _leaked(_walk(client, f"/admin/login/?next=/admin/payments/payment/{PAN}/change/")) == []
    otp_force_login(client, make_staff("root", superuser=True))
    seen = _walk(client, f"/admin/no-such-page/{PAN}/")
    assert seen[0][0] == 302 and _leaked(seen) == []


def test_a_path_without_a_card_number_is_not_redirected(client):
    """An id of digits that is no card number (Luhn fails) is looked up as it is."""
    otp_force_login(client, make_staff("root", superuser=True))
    response = client.get("/admin/payments/payment/4111111111111112/change/")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_a_form_posted_to_a_path_with_a_card_number_is_sent_away_unprocessed(client):
    """A POST is not redirected by the browser with its body: 303 to the masked page, the view never
    runs (it would store "… with ID “<the number>” doesn't exist" for the next page)."""
    otp_force_login(client, make_staff("root", superuser=True))
    response = client.post(f"/admin/auth/group/{PAN}/change/", {"name": "x"})
    assert response.status_code == 303 and response["Location"] == f"/admin/auth/group/{MASKED}/change/"
    assert _leaked(_walk(client, "/admin/")) == []
    response = client.post("/admin/auth/group/add/?next=" + PAN, {"name": "x"})
    assert response.status_code == 303 and PAN not in response["Location"]
