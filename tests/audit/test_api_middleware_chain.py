"""The merchant API (`/v1/`) passes through the browser-only middleware (sessions, the staff user,
its second factor, messages: payera.core.browser_middleware,
docs/decisions/api-middleware-chain.md). What must still hold on the API: a request id, the
API key as the audit actor, the client address, the security headers; and on the back office,
everything the browser middleware did."""

import pytest
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.test import Client
from django.utils.module_loading import import_string
from django_otp.middleware import OTPMiddleware

from payera.audit.models import AuditLogEntry
from payments.models import Customer
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db


def _customer_entry(customer_id: str) -> AuditLogEntry:
    return AuditLogEntry.objects.get(
        content_type=ContentType.objects.get_for_model(Customer), object_pk=customer_id,
        action=AuditLogEntry.Action.CREATE,
    )


def test_an_api_write_keeps_its_request_id_audit_actor_and_client_address(api_key):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key.secret}")
    response = client.post("/v1/customers", {"email": "ada@example.com"}, content_type="application/json",
                           HTTP_X_REQUEST_ID="req_api_chain_0001", REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 201
    assert response["Request-Id"] == "req_api_chain_0001"
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still runs
    assert response["X-Frame-Options"] == "DENY"
    entry = _customer_entry(response.json()["id"])
    assert entry.api_key_id == api_key.api_key.id and entry.merchant_id == api_key.api_key.merchant_id
    assert entry.actor_id is None
    assert entry.request_id == "req_api_chain_0001" and entry.cid == "req_api_chain_0001"
    assert entry.remote_addr == "198.51.100.7"


def test_a_staff_session_cookie_on_the_api_is_neither_read_nor_extended(api_key, staff_admin):
    """A browser signed in to the back office that also calls the API with a key: the API acts as
    the key (the cookie authenticates nothing there), and the staff session is not saved again
    (SESSION_SAVE_EVERY_REQUEST would have extended its idle timeout on every API call)."""
    client = Client()
    otp_force_login(client, staff_admin)
    response = client.post("/v1/customers", {"name": "Ada"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_key.secret}")
    assert response.status_code == 201
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert settings.CSRF_COOKIE_NAME not in response.cookies
    assert "Cookie" not in response.get("Vary", "")
    entry = _customer_entry(response.json()["id"])
    assert entry.actor_id is None and entry.api_key_id == api_key.api_key.id


def test_the_api_without_a_key_is_still_refused_with_a_session_cookie(staff_admin):
    client = Client()
    otp_force_login(client, staff_admin)
    response = client.post("/v1/customers", {"name": "Ada"}, content_type="application/json")
    assert response.status_code == 401
    assert not Customer.objects.exists()


def test_the_back_office_still_has_sessions_csrf_and_its_staff_user(staff_admin):
    client = Client(enforce_csrf_checks=True)
    otp_force_login(client, staff_admin)
    page = client.get("/admin/")
    assert page.status_code == 200  # the session's staff user, verified by OTP
    assert page.wsgi_request.user == staff_admin and page.wsgi_request.user.is_verified()
    assert client.post("/admin/auth/group/add/", {"name": "night"}).status_code == 403  # no CSRF token


def test_the_browser_middleware_is_the_libraries_own_class_in_the_same_place():
    """Django's and the admin's system checks look for these classes (or subclasses) in MIDDLEWARE."""
    loaded = [import_string(path) for path in settings.MIDDLEWARE]
    for library_class in (SessionMiddleware, CsrfViewMiddleware, AuthenticationMiddleware, OTPMiddleware,
                          MessageMiddleware):
        assert sum(issubclass(cls, library_class) for cls in loaded) == 1
    order = [next(i for i, cls in enumerate(loaded) if issubclass(cls, c))
             for c in (SessionMiddleware, CsrfViewMiddleware, AuthenticationMiddleware, OTPMiddleware,
                       MessageMiddleware)]
    assert order == sorted(order)
