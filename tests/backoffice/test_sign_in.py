"""Staff sign-in as PCI DSS asks: password + TOTP, lockout after 10 failures for 30 minutes,
15 idle minutes per session, 12+ character passwords; every sign-in, failure and lockout in the
audit trail (audit.SecurityEvent)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from payera.audit.models import SecurityEvent
from tests.backoffice.staff import PASSWORD, make_staff, otp_force_login, totp_device, totp_token

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
ADDR = "198.51.100.7"


@pytest.fixture
def clock(monkeypatch):
    """Moves `timezone.now()` (sessions, axes) forward: `clock.advance(minutes=16)`. TOTP codes
    still follow the real clock (django-otp reads time.time())."""

    class Clock:
        offset = timedelta()

        def now(self):
            return real_now() + self.offset

        def advance(self, **kwargs):
            self.offset += timedelta(**kwargs)

    real_now = timezone.now
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock.now)
    monkeypatch.setattr("axes.attempts.now", clock.now)
    monkeypatch.setattr("axes.handlers.proxy.now", clock.now)
    return clock


@pytest.fixture
def ops(db):
    return make_staff("olga", role="operations")


def sign_in(client, username, *, password=PASSWORD, token=None, addr=ADDR):
    data = {"username": username, "password": password}
    if token is not None:
        data["otp_token"] = token
    return client.post(LOGIN, data, REMOTE_ADDR=addr, HTTP_X_REQUEST_ID="req_signin_test")


def signed_in(client) -> bool:
    return client.get("/admin/", REMOTE_ADDR=ADDR).status_code == 200


def failures(reason=None):
    events = SecurityEvent.objects.filter(event="auth_failure", kind="staff_login").order_by("pk")
    return list(events.filter(reason=reason) if reason else events)


# --- second factor ------------------------------------------------------------------------------
def test_password_and_totp_code_sign_in_and_the_sign_in_is_recorded(client, ops):
    response = sign_in(client, "olga", token=totp_token(totp_device(ops)))
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert signed_in(client)
    login = SecurityEvent.objects.get(event="login")
    assert (login.user_id, login.identifier, login.remote_addr, login.request_id) == (
        ops.pk, "olga", ADDR, "req_signin_test",
    )
    assert failures() == []


def test_the_password_alone_is_not_enough(client, ops):
    response = sign_in(client, "olga")
    assert response.status_code == 200 and b"authenticator" in response.content
    assert not signed_in(client)
    [failure] = failures()
    assert (failure.reason, failure.identifier, failure.remote_addr) == ("otp_missing", "olga", ADDR)
    assert not SecurityEvent.objects.filter(event="login").exists()


def test_a_wrong_code_is_refused_and_recorded(client, ops):
    good = totp_token(totp_device(ops))
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    assert sign_in(client, "olga", token=wrong).status_code == 200
    assert not signed_in(client)
    assert [f.reason for f in failures()] == ["otp_invalid"]


def test_the_page_never_tells_that_the_password_was_right(client, ops):
    device = totp_device(ops)
    right_password = sign_in(client, "olga", token="000000")
    wrong_password = sign_in(client, "olga", password="not-the-password-123", token=totp_token(device))
    no_code = sign_in(client, "olga")

    def errors(page):
        return page.context["form"].errors

    assert errors(right_password) == errors(wrong_password) == errors(no_code)
    assert [f.reason for f in failures()] == ["otp_invalid", "invalid_credentials", "otp_missing"]


def test_a_wrong_password_is_recorded_without_the_password(client, ops):
    token = totp_token(totp_device(ops))
    assert sign_in(client, "olga", password="not-the-password-123", token=token).status_code == 200
    assert [f.reason for f in failures()] == ["invalid_credentials"]
    assert "not-the-password" not in str(SecurityEvent.objects.values())


def test_an_account_without_a_device_can_not_sign_in(client, ops):
    totp_device(ops).delete()
    response = sign_in(client, "olga", token="123456")
    assert response.status_code == 200
    assert b"authenticator device needs one from an administrator" in response.content
    assert not signed_in(client)
    assert [f.reason for f in failures()] == ["otp_no_device"]


def test_a_code_is_accepted_once(client, ops):
    token = totp_token(totp_device(ops))
    assert sign_in(client, "olga", token=token).status_code == 302
    client.post("/admin/logout/", REMOTE_ADDR=ADDR)
    assert sign_in(client, "olga", token=token).status_code == 200  # replayed code
    assert [f.reason for f in failures()] == ["otp_invalid"]


def test_another_users_device_can_not_be_chosen(client, ops):
    other = make_staff("mallory")
    device = totp_device(other)
    response = client.post(LOGIN, {
        "username": "olga", "password": PASSWORD, "otp_device": device.persistent_id, "otp_token": totp_token(device),
    }, REMOTE_ADDR=ADDR)
    assert response.status_code == 200 and not signed_in(client)


def test_a_session_without_a_verified_device_gets_no_admin_page(client, ops):
    client.force_login(ops)  # password-level session only (e.g. another login view)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert client.get("/admin/merchants/merchant/").status_code == 302


def test_a_non_staff_user_with_a_device_is_refused_and_recorded(client, django_user_model):
    user = django_user_model.objects.create_user("nina", "nina@payera.test", PASSWORD)
    response = sign_in(client, "nina", token=totp_token(totp_device(user)))
    assert response.status_code == 200 and not signed_in(client)
    assert [f.reason for f in failures()] == ["not_staff"]


# --- lockout ------------------------------------------------------------------------------------
def test_ten_failures_lock_the_account_for_thirty_minutes(client, ops, clock):
    device = totp_device(ops)
    for n in range(9):
        assert sign_in(client, "olga", password=f"wrong-password-{n:02d}").status_code == 200
    assert not failures("locked_out")
    assert sign_in(client, "olga", password="wrong-password-10").status_code == 429  # the 10th
    [lockout] = failures("locked_out")
    assert (lockout.identifier, lockout.remote_addr) == ("olga", ADDR)

    # Locked: the right password and code are refused too, from another address as well.
    assert sign_in(client, "olga", token=totp_token(device), addr="203.0.113.20").status_code == 429
    assert not signed_in(client)
    assert not SecurityEvent.objects.filter(event="login").exists()

    clock.advance(minutes=29)
    assert sign_in(client, "olga", token=totp_token(device)).status_code == 429
    clock.advance(minutes=31)  # 30 minutes after the last failure (failures during a lockout extend it)
    assert sign_in(client, "olga", token=totp_token(device)).status_code == 302
    assert SecurityEvent.objects.filter(event="login", user=ops).count() == 1


def test_wrong_codes_count_towards_the_lockout(client, ops):
    for _ in range(10):
        sign_in(client, "olga", token="000000")
    assert failures("locked_out")
    assert sign_in(client, "olga", token=totp_token(totp_device(ops))).status_code == 429


def test_consecutive_failures_count_a_success_resets_them(client, ops):
    device = totp_device(ops)
    for n in range(9):
        sign_in(client, "olga", password=f"wrong-password-{n:02d}")
    assert sign_in(client, "olga", token=totp_token(device)).status_code == 302
    client.post("/admin/logout/", REMOTE_ADDR=ADDR)
    for n in range(9):
        sign_in(client, "olga", password=f"wrong-password-{n:02d}")
    assert not failures("locked_out")


def test_an_address_spraying_many_accounts_is_locked(client, db):
    for n in range(10):
        sign_in(client, f"guess{n}", password="Summer2026!!x", addr="192.0.2.99")
    assert failures("locked_out")
    ada = make_staff("ada2")
    assert sign_in(client, "ada2", token=totp_token(totp_device(ada)), addr="192.0.2.99").status_code == 429
    assert sign_in(client, "ada2", token=totp_token(totp_device(ada)), addr="192.0.2.100").status_code == 302


# --- idle sessions ------------------------------------------------------------------------------
def test_a_session_ends_after_fifteen_idle_minutes(client, ops, clock):
    assert sign_in(client, "olga", token=totp_token(totp_device(ops))).status_code == 302
    clock.advance(minutes=14)
    assert signed_in(client)  # activity renews the session...
    clock.advance(minutes=14)
    assert signed_in(client)  # ...so 28 minutes after sign-in it is still alive
    clock.advance(minutes=15, seconds=1)
    response = client.get("/admin/", REMOTE_ADDR=ADDR)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_session_settings_are_the_pci_ones(settings):
    assert settings.SESSION_COOKIE_AGE == 15 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True


# --- passwords ----------------------------------------------------------------------------------
def test_staff_can_not_set_a_password_shorter_than_twelve(client, ops):
    otp_force_login(client, ops)
    url = "/admin/password_change/"
    short = "Xq7!pLm2#vR"  # 11 characters, otherwise strong
    response = client.post(url, {"old_password": PASSWORD, "new_password1": short, "new_password2": short})
    assert response.status_code == 200 and b"at least 12 characters" in response.content
    ops.refresh_from_db()
    assert ops.check_password(PASSWORD)
    good = short + "w"
    response = client.post(url, {"old_password": PASSWORD, "new_password1": good, "new_password2": good})
    assert response.status_code == 302
    ops.refresh_from_db()
    assert ops.check_password(good)


def test_an_admin_can_not_give_staff_a_short_password(client, superuser, ops):
    otp_force_login(client, superuser)
    url = f"/admin/auth/user/{ops.pk}/password/"
    short = "Xq7!pLm2#vR"
    response = client.post(url, {"password1": short, "password2": short, "usable_password": "true"})
    assert response.status_code == 200 and b"at least 12 characters" in response.content
    response = client.post("/admin/auth/user/add/", {
        "username": "newbie", "password1": short, "password2": short, "usable_password": "true",
    })
    assert response.status_code == 200 and b"at least 12 characters" in response.content
    ops.refresh_from_db()
    assert ops.check_password(PASSWORD)


def test_the_createsuperuser_and_changepassword_rules_are_the_same_validators():
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        validate_password("Xq7!pLm2#vR")
    validate_password("Xq7!pLm2#vRw")


# --- unlocking ----------------------------------------------------------------------------------
def test_unlocking_an_account_from_the_admin_is_in_the_audit_trail(client, ops, superuser):
    """Was: an admin unlocks a locked account early by deleting its access attempts
    (`Axes › Access attempts`, docs/backoffice.md), and nothing of it reached the audit trail:
    axes' rows are not audited models, so who lifted a brute-force lockout, and when, was not
    recorded. Now deleting an access attempt writes a delete record (the masked username, the
    address and the failure count; never the POST data) with the staff member who did it."""
    from axes.models import AccessAttempt

    from payera.audit.models import AuditLogEntry

    for _ in range(10):
        sign_in(client, "olga", password="wrong-password-long")
    attempt = AccessAttempt.objects.get()
    assert attempt.failures_since_start == 10
    admin_client = otp_force_login(type(client)(), superuser)
    page = admin_client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}, REMOTE_ADDR=ADDR)
    assert page.status_code == 302 and not AccessAttempt.objects.exists()
    record = AuditLogEntry.objects.get(content_type__app_label="axes", content_type__model="accessattempt")
    assert (record.action, record.actor_id, record.object_pk) == (AuditLogEntry.Action.DELETE, superuser.pk,
                                                                  str(attempt.pk))
    assert record.changes_dict["failures_since_start"][0] == "10"
    assert record.changes_dict["ip_address"][0] == ADDR and "username" in record.changes_dict
    assert "post_data" not in record.changes_dict and "wrong-password-long" not in str(record.changes)
    assert sign_in(client, "olga", token=totp_token(totp_device(ops))).status_code == 302
