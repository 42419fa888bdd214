from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from payera.merchants.models import ApiKey, Merchant
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-password-123")
    otp_force_login(client, user)
    return client


def test_admin_pages_never_show_the_secret_or_its_hash(staff_client):
    from tests.merchants.factories import MerchantFactory, make_api_key

    merchant = MerchantFactory(id="mer_5B" + "x" * 22)  # "_5B" is an admin escape: quoting must hold
    api_key = make_api_key(merchant)
    for url in (
        f"/admin/merchants/merchant/{quote(merchant.pk)}/change/",  # ids like mer_5B… need admin quoting
        "/admin/merchants/apikey/",
        f"/admin/merchants/apikey/{quote(api_key.api_key.pk)}/change/",
    ):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert api_key.secret.encode() not in response.content
        assert api_key.api_key.secret_hash.encode() not in response.content


def test_admin_actions_call_the_services(staff_client, merchant, api_key):
    staff_client.post(
        "/admin/merchants/apikey/", {"action": "revoke", "_selected_action": [api_key.api_key.pk], "confirm": "yes",
                                "reason": "leaked in a support ticket"}
    )
    assert ApiKey.objects.get(pk=api_key.api_key.pk).revoked_at is not None
    staff_client.post("/admin/merchants/merchant/", {"action": "suspend", "_selected_action": [merchant.pk],
                                                     "confirm": "yes", "reason": "fraud investigation"})
    assert Merchant.objects.get(pk=merchant.pk).status == "suspended"
