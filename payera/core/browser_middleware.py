"""The browser-only middleware, passed through on the merchant API (`/v1/`).

The API authenticates every request by its `Authorization: Bearer` key (DRF's
`ApiKeyAuthentication`), never by a cookie. Sessions, the staff user, its second factor and
flash messages serve the back office (admin pages, staff sign-in); on `/v1/` they cost CPU on
every request, and a staff session cookie sent along was read (its user put next to the API key
as the audit actor) and saved again (its idle timeout extended by API calls).
Each class here is the library's own middleware, subclassed (so Django's and the admin's system
checks still find it), that hands a `/v1/` request straight to the next layer. Everything else —
request id, NUL guard, security headers, metrics, the audit context, X-Frame-Options — runs on
every path, and so do CSRF (every API view is csrf_exempt: it returns at once) and django-axes'
lockout check (one getattr after the view): their system checks want their exact classes.
docs/decisions/api-middleware-chain.md.
"""

from __future__ import annotations

from django.contrib.auth.middleware import AuthenticationMiddleware as _AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware as _MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as _SessionMiddleware
from django_otp.middleware import OTPMiddleware as _OTPMiddleware

API_PATH_PREFIX = "/v1/"  # the merchant API: API-key authenticated, no cookies used


class _BrowserOnly:
    def __call__(self, request):
        if request.path_info.startswith(API_PATH_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_BrowserOnly, _SessionMiddleware):
    pass


class AuthenticationMiddleware(_BrowserOnly, _AuthenticationMiddleware):
    pass


class OTPMiddleware(_BrowserOnly, _OTPMiddleware):
    pass


class MessageMiddleware(_BrowserOnly, _MessageMiddleware):
    pass
