"""Back-office actions that ask why first: an intermediate page with a reason (and any other
field the action needs), then the action runs through its service, and a `StaffAction` row keeps
who, what, why and how it ended.

Two shapes, one template (`backoffice/action_reason.html`):
- `reason_action(...)`: the body of a changelist action (`@admin.action(permissions=[...])`):
  the first POST (from the action menu) shows the page, the second (with `confirm`) runs it on
  the selected rows that `get_queryset` allows (other merchants' ids are dropped by Django).
- `reason_page(...)`: a per-object view (a button on a change page, e.g. "Refund"): GET shows
  the page, POST runs it once.
Services raise `PayeraError` to refuse; the refusal is shown and recorded, nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from payera.backoffice.models import StaffActionOutcome
from payera.backoffice.services import REASON_MIN_LENGTH, staff_action_record
from payera.core.errors import PayeraError


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason", min_length=REASON_MIN_LENGTH, max_length=1000, strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why (a ticket number, the merchant's request...). Kept in the back-office action log.",
    )


# perform(obj, cleaned_data) -> (outcome, message); raise PayeraError to refuse
Perform = Callable[[object, dict], tuple[str, str]]


def _merchant_id(modeladmin, obj) -> str:
    of = getattr(modeladmin, "merchant_id_of", None)
    return of(obj) if of else ""


def _run_one(modeladmin, request, obj, *, action: str, perform: Perform, data: dict) -> tuple[str, str]:
    try:
        outcome, detail = perform(obj, data)
    except PayeraError as exc:
        outcome, detail = StaffActionOutcome.REFUSED, exc.message
    staff_action_record(
        user=request.user, action=action, object_type=obj._meta.label_lower, object_id=str(obj.pk),
        merchant_id=_merchant_id(modeladmin, obj), reason=data["reason"], outcome=outcome, detail=detail,
    )
    level = messages.WARNING if outcome == StaffActionOutcome.REFUSED else messages.SUCCESS
    modeladmin.message_user(request, f"{obj.pk}: {detail}", level=level)
    return outcome, detail


def _render(modeladmin, request, *, title: str, form, objects, action_name: str = "", selected=(),
            button: str = "Confirm"):
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title, "form": form, "objects": objects, "action_name": action_name, "selected": selected,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME, "opts": modeladmin.model._meta, "button": button,
    }
    return TemplateResponse(request, "backoffice/action_reason.html", context)


def reason_action(modeladmin, request, queryset, *, action: str, title: str, perform: Perform,
                  form_class: type[forms.Form] = ReasonForm, button: str = "Confirm"):
    """Body of a changelist action that asks for a reason on an intermediate page."""
    form = form_class(request.POST) if "confirm" in request.POST else form_class()
    if "confirm" in request.POST and form.is_valid():
        for obj in queryset:
            _run_one(modeladmin, request, obj, action=action, perform=perform, data=form.cleaned_data)
        return None  # back to the changelist, with the messages
    return _render(modeladmin, request, title=title, form=form, objects=list(queryset),
                   action_name=request.POST.get("action", ""),
                   selected=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME), button=button)


def reason_page(modeladmin, request, obj, *, action: str, title: str, perform: Perform, done_url: str,
                form_class: type[forms.Form] = ReasonForm, initial: dict | None = None, button: str = "Confirm"):
    """A per-object action view: GET shows the page, a valid POST runs it once and goes to `done_url`."""
    if request.method == "POST":
        form = form_class(request.POST)
        if form.is_valid():
            _run_one(modeladmin, request, obj, action=action, perform=perform, data=form.cleaned_data)
            return HttpResponseRedirect(done_url)
    else:
        form = form_class(initial=initial)
    return _render(modeladmin, request, title=title, form=form, objects=[obj], button=button)
