"""The back-office admin site (`django.contrib.admin.site`).

- Sign-in: password and TOTP code (`forms.StaffAuthenticationForm`); a page needs an active staff
  user verified by an OTP device in this session (`OTPAdminSite.has_permission`). Sessions end
  after `SESSION_COOKIE_AGE` idle seconds (15 minutes; renewed on every request).
- Registration scopes every merchant-owned admin to the staff member's merchants (`scoping`), and
  makes every admin's forms refuse card numbers (`card_numbers`).
- The index is the dashboard: the panels (`panels`) the user may see, above the app list.
- A card number in a page's query string (a shopper's number pasted into a search box) is never
  rendered back: the request is redirected to the same page with it masked (`411111******1111`),
  which the payments search takes as the card's BIN and last 4.
- A card number in a page's path (`/admin/payments/payment/4111111111111111/change/`, typed or
  pasted as an object id) is never rendered back either: Django's admin echoes an unknown object
  id ("… with ID “…” doesn't exist"), its delete and history pages and redirects carry it. Every
  admin view, the sign-in page and the catch-all 404 redirect first to the path with it masked.
"""

from __future__ import annotations

from functools import update_wrapper
from urllib.parse import urlencode

from django.contrib.admin import ModelAdmin
from django.db.models.base import ModelBase
from django.http import HttpResponseRedirect
from django.utils.encoding import escape_uri_path
from django_otp.admin import OTPAdminSite

from payera.backoffice import panels
from payera.backoffice.card_numbers import guarded_admin_class
from payera.backoffice.forms import StaffAuthenticationForm
from payera.backoffice.scoping import scoped_admin_class
from payera.core.masking import mask_card_numbers


def _masked_query(query) -> str | None:
    """The query string with its card numbers masked, or None when it holds none."""
    pairs = [(key, value) for key, values in query.lists() for value in values]
    masked = [(mask_card_numbers(key), mask_card_numbers(value)) for key, value in pairs]
    return urlencode(masked) if masked != pairs else None


def card_number_redirect(request) -> HttpResponseRedirect | None:
    """A redirect to the same page with the card numbers of its path and query string masked, or
    None when they hold none. A request of another method (a form posted to a crafted URL) is sent
    there with 303 See Other: its body is dropped, never replayed, and the view never runs (a POST
    to an unknown object's page would store "… with ID “<the path's id>” doesn't exist" for the
    next page)."""
    path = mask_card_numbers(request.path)
    query = _masked_query(request.GET) if request.GET else None
    if path == request.path and query is None:
        return None
    query = query if query is not None else request.META.get("QUERY_STRING", "")
    response = HttpResponseRedirect(escape_uri_path(path) + (f"?{query}" if query else ""))
    if request.method not in ("GET", "HEAD"):
        response.status_code = 303
    return response


class BackofficeAdminSite(OTPAdminSite):
    site_header = "Payera back office"
    site_title = "Payera back office"
    index_title = "Dashboard"
    login_form = StaffAuthenticationForm
    login_template = "backoffice/login.html"
    index_template = "backoffice/index.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def register(self, model_or_iterable, admin_class=None, **options):
        models = [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else list(model_or_iterable)
        for model in models:
            admin_class_for_model = guarded_admin_class(scoped_admin_class(model, admin_class or ModelAdmin))
            super().register(model, admin_class_for_model, **options)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        def guarded(request, *args, **kwargs):
            return card_number_redirect(request) or inner(request, *args, **kwargs)

        return update_wrapper(guarded, inner)

    def login(self, request, extra_context=None):
        # Not wrapped by admin_view: its `next` (a page's path) is rendered in the form.
        return card_number_redirect(request) or super().login(request, extra_context)

    def index(self, request, extra_context=None):
        context = {"panels": panels.panels_for(request), **(extra_context or {})}
        return super().index(request, extra_context=context)
