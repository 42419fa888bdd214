"""The back-office admin site (`django.contrib.admin.site`).

- Sign-in: password and TOTP code (`forms.StaffAuthenticationForm`); a page needs an active staff
  user verified by an OTP device in this session (`OTPAdminSite.has_permission`). Sessions end
  after `SESSION_COOKIE_AGE` idle seconds (15 minutes; renewed on every request).
- Registration scopes every merchant-owned admin to the staff member's merchants (`scoping`).
- The index is the dashboard: the panels (`panels`) the user may see, above the app list.
- A card number in a page's query string (a shopper's number pasted into a search box) is never
  rendered back: the request is redirected to the same page with it masked (`411111******1111`),
  which the payments search takes as the card's BIN and last 4.
"""

from __future__ import annotations

from functools import update_wrapper
from urllib.parse import urlencode

from django.contrib.admin import ModelAdmin
from django.db.models.base import ModelBase
from django.http import HttpResponseRedirect
from django_otp.admin import OTPAdminSite

from payera.backoffice import panels
from payera.backoffice.forms import StaffAuthenticationForm
from payera.backoffice.scoping import scoped_admin_class
from payera.core.masking import mask_card_numbers


def _masked_query(query) -> str | None:
    """The query string with its card numbers masked, or None when it holds none."""
    pairs = [(key, value) for key, values in query.lists() for value in values]
    masked = [(mask_card_numbers(key), mask_card_numbers(value)) for key, value in pairs]
    return urlencode(masked) if masked != pairs else None


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
            super().register(model, scoped_admin_class(model, admin_class or ModelAdmin), **options)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        def guarded(request, *args, **kwargs):
            if request.method in ("GET", "HEAD") and request.GET:
                masked = _masked_query(request.GET)
                if masked is not None:
                    return HttpResponseRedirect(f"{request.path}?{masked}")
            return inner(request, *args, **kwargs)

        return update_wrapper(guarded, inner)

    def index(self, request, extra_context=None):
        context = {"panels": panels.panels_for(request), **(extra_context or {})}
        return super().index(request, extra_context=context)
