"""Each role signs in to the back office in headless Chromium (password + TOTP code computed
here), opens the dashboard, the merchants and the webhook deliveries; operations replays a dead
letter from the admin. Screenshots of the dashboard go to var/screenshots/, and to docs/img/ when
UPDATE_SCREENSHOTS=1 (the ones docs/backoffice.md shows)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from payera.events.models import DeliveryStatus, WebhookDelivery
from tests.backoffice.leaks import leaks
from tests.backoffice.staff import PASSWORD, totp_device, totp_token

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
DOCS_IMG = Path(settings.BASE_DIR) / "docs" / "img"


def screenshot(browser, name: str, *, for_docs: bool = False) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    if for_docs and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, DOCS_IMG / path.name)
    return path


def wait_for(browser, css: str, timeout: float = 10):
    return WebDriverWait(browser, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(browser, live_server, user, *, token: str | None = None):
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys(user.get_username())
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.NAME, "otp_token").send_keys(token if token is not None else totp_token(totp_device(user)))
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()


def assert_clean(browser):
    assert leaks(browser.page_source) == [], browser.current_url


def text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


@pytest.mark.parametrize("role", ["support", "operations", "finance", "admin"])
def test_each_role_signs_in_with_totp_and_walks_dashboard_merchants_and_deliveries(
    browser, live_server, role_users, world, role
):
    user = role_users[role]
    sign_in(browser, live_server, user)
    wait_for(browser, "#dashboard")
    assert browser.current_url == f"{live_server.url}/admin/"
    panels = {el.get_attribute("data-panel") for el in browser.find_elements(By.CSS_SELECTOR, "[data-panel]")}
    assert "events.webhooks" in panels
    assert ("audit.security" in panels) == (role == "admin")  # reading the audit trail is admin's
    dead = browser.find_element(By.CSS_SELECTOR, "[data-panel='events.webhooks'] [data-metric='dead letters'] .value")
    assert dead.text == ("2" if role == "admin" else "1")  # limited staff count only merchant A's
    assert_clean(browser)
    screenshot(browser, f"backoffice-dashboard-{role}", for_docs=role in ("admin", "operations"))

    browser.get(f"{live_server.url}/admin/merchants/merchant/")
    wait_for(browser, "#result_list")
    assert "Merchant A" in text(browser)
    assert ("Merchant B" in text(browser)) == (role == "admin")
    browser.find_element(By.LINK_TEXT, world["A"].merchant.pk).click()
    wait_for(browser, "#content-main")
    assert "Merchant A" in browser.page_source
    assert_clean(browser)

    browser.get(f"{live_server.url}/admin/events/webhookdelivery/?status__exact=dead")
    wait_for(browser, "#result_list")
    assert world["A"].dead_delivery.pk in text(browser)
    browser.find_element(By.LINK_TEXT, world["A"].dead_delivery.pk).click()
    wait_for(browser, "#content-main")
    assert "HTTP 500" in text(browser)
    assert_clean(browser)


def test_operations_replays_a_dead_letter_from_the_admin(browser, live_server, role_users, world):
    delivery = world["A"].dead_delivery
    sign_in(browser, live_server, role_users["operations"])
    wait_for(browser, "#dashboard")
    browser.find_element(By.LINK_TEXT, "dead letters").click()
    wait_for(browser, "#result_list")
    browser.find_element(By.CSS_SELECTOR, f"input.action-select[value='{delivery.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("replay_deliveries")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    wait_for(browser, "#bo-action-form")  # why? first
    browser.find_element(By.NAME, "reason").send_keys("merchant fixed their endpoint (ticket 4711)")
    browser.find_element(By.NAME, "_confirm").click()
    wait_for(browser, ".messagelist")
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert f"{delivery.pk}: queued for replay".lower() in message.lower()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.replay_count) == (DeliveryStatus.PENDING, 1)
    assert WebhookDelivery.objects.get(pk=world["B"].dead_delivery.pk).status == DeliveryStatus.DEAD


def test_support_sees_no_replay_action(browser, live_server, role_users, world):
    sign_in(browser, live_server, role_users["support"])
    wait_for(browser, "#dashboard")
    browser.get(f"{live_server.url}/admin/events/webhookdelivery/")
    wait_for(browser, "#result_list")
    options = [el.get_attribute("value") for el in browser.find_elements(By.CSS_SELECTOR, "select[name=action] option")]
    assert "replay_deliveries" not in options


def test_a_wrong_code_keeps_the_browser_on_the_sign_in_page(browser, live_server, role_users):
    sign_in(browser, live_server, role_users["support"], token="000000")
    wait_for(browser, ".errornote")
    assert "correct username, password and authenticator code" in text(browser)
    browser.get(f"{live_server.url}/admin/")
    assert "/admin/login/" in browser.current_url
