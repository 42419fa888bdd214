"""The payment walks in headless Chromium: each role finds a payment and opens it (seeing only
the actions its role allows); finance refunds it with four-eyes approval by a second finance
user; operations replays a webhook delivery from the payment page. The payment page's
screenshot goes to docs/img/ with UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from payera.events.models import DeliveryStatus, WebhookDelivery
from payera.staff.access import staff_grant_merchant
from payments.backoffice.models import RefundApproval
from payments.models import OperationStatus, Refund
from tests.backoffice.browser.test_admin_walks import assert_clean, screenshot, sign_in, text, wait_for
from tests.backoffice.payments import pay, settle
from tests.backoffice.staff import make_staff

pytestmark = pytest.mark.django_db(transaction=True)

BUTTONS = {"support": set(), "operations": {"bo-cancel", "bo-recover"},
           "finance": {"bo-refund", "bo-cancel", "bo-recover"}, "admin": {"bo-refund", "bo-cancel", "bo-recover"}}


@pytest.fixture
def shop(psp_settings, world):
    """Merchant A's captured payment (declined by alpha, approved by beta), of ada@shop.test;
    refunds above 20.00 EUR need a second approval."""
    merchant = world["A"].merchant
    merchant.refund_approval_threshold = 2_000
    merchant.save(update_fields=["refund_approval_threshold"])
    return pay(merchant, amount=12_500, email="ada@shop.test")


def find_and_open(browser, live_server, term: str, payment_id: str):
    browser.get(f"{live_server.url}/admin/payments/payment/")
    wait_for(browser, "#searchbar")
    browser.find_element(By.ID, "searchbar").send_keys(term)
    browser.find_element(By.CSS_SELECTOR, "#changelist-search [type=submit]").click()
    wait_for(browser, "#result_list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and payment_id in rows[0].text
    browser.find_element(By.LINK_TEXT, payment_id).click()
    wait_for(browser, "#payment-story")
    assert_clean(browser)


def confirm_with_reason(browser, reason: str, **fields):
    wait_for(browser, "#bo-action-form")
    for name, value in fields.items():
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(str(value))
    browser.find_element(By.NAME, "reason").send_keys(reason)
    browser.find_element(By.NAME, "_confirm").click()
    wait_for(browser, ".messagelist")


@pytest.mark.parametrize("role", ["support", "operations", "finance", "admin"])
def test_each_role_finds_a_payment_and_opens_it(browser, live_server, role_users, shop, role):
    sign_in(browser, live_server, role_users[role])
    wait_for(browser, "#dashboard")
    find_and_open(browser, live_server, "ada@shop.test", shop.pk)
    page = text(browser)
    assert "alpha" in page and "beta" in page and "processing_error" in page  # the decline, then the approval
    buttons = {el.get_attribute("id") for el in browser.find_elements(By.CSS_SELECTOR, ".object-tools a[id^=bo-]")}
    # cancel needs an uncaptured payment: not offered on this one
    assert buttons == BUTTONS[role] - {"bo-cancel"}, role


def test_finance_refunds_a_payment_with_four_eyes_approval(browser, live_server, role_users, shop, world):
    requester = role_users["finance"]
    approver = make_staff("finance-two", role="finance")
    staff_grant_merchant(user=approver, merchant_id=world["A"].merchant.pk)

    sign_in(browser, live_server, requester)
    wait_for(browser, "#dashboard")
    find_and_open(browser, live_server, shop.pk, shop.pk)
    browser.find_element(By.ID, "bo-refund").click()
    confirm_with_reason(browser, "goods returned, ticket 4711", amount=5_000)
    assert "waits for a second finance user's approval" in text(browser).lower()
    [approval] = RefundApproval.objects.all()
    assert approval.status == "pending" and not Refund.objects.exists()

    sign_in(browser, live_server, approver)
    wait_for(browser, "#dashboard")
    browser.find_element(By.LINK_TEXT, "refunds awaiting approval").click()
    wait_for(browser, "#result_list")
    browser.find_element(By.LINK_TEXT, approval.pk).click()
    wait_for(browser, "#bo-approve").click()
    confirm_with_reason(browser, "return received in the warehouse")
    assert "approved; refund" in text(browser).lower()
    approval.refresh_from_db()
    [refund] = Refund.objects.all()
    assert (approval.status, approval.decided_by, approval.refund_id) == ("sent", approver, refund.pk)
    settle(shop.pk)  # beta refunds asynchronously: learn its outcome
    refund.refresh_from_db()
    assert refund.status == OperationStatus.SUCCEEDED
    browser.refresh()
    wait_for(browser, "#payment-story")
    page = text(browser)
    assert f"refund:{refund.pk}" in page and "return received in the warehouse" in page
    assert_clean(browser)
    browser.set_window_size(1400, 3200)  # the whole story in one picture
    screenshot(browser, "backoffice-payment-page", for_docs=True)


def test_operations_replays_a_webhook_delivery_from_the_payment_page(browser, live_server, role_users, shop):
    delivery = WebhookDelivery.objects.filter(event__data__object__id=shop.pk).order_by("created_at").first()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.DEAD, next_attempt_at=None,
                                                          last_error="HTTP 500")
    sign_in(browser, live_server, role_users["operations"])
    wait_for(browser, "#dashboard")
    find_and_open(browser, live_server, "0119", shop.pk)  # a card's last 4
    browser.find_element(By.CSS_SELECTOR, f"[data-delivery='{delivery.pk}'] a.bo-replay").click()
    confirm_with_reason(browser, "merchant fixed their endpoint")
    assert f"{delivery.pk}: queued for replay".lower() in text(browser).lower()
    assert "merchant fixed their endpoint" in text(browser)  # the action, on the payment's page
    delivery.refresh_from_db()
    assert (delivery.status, delivery.replay_count) == (DeliveryStatus.PENDING, 1)
