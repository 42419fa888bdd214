"""The admin of actions waiting for a second user (four eyes): read-only rows, each with an Approve
and a Reject page of its own (`<id>/approve/`, `<id>/reject/`, named
`<app_label>_<model_name>_approve` / `_reject`). The change form template shows the buttons from
`can_approve` / `can_reject`.

A ModelAdmin mixes this in before `admin.ModelAdmin` and says who may decide:
- `may_decide(request, obj)`: may reject (and see the buttons at all);
- `may_approve(request, obj)`: may approve this one (default: `may_decide`); the asker never may,
  whatever this says (the services and the database refuse it too).
Each admin writes its own `approve_view` / `reject_view` (its service, its words)."""

from __future__ import annotations

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import path

PENDING = "pending"


class FourEyesAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def may_decide(self, request, obj) -> bool:
        raise NotImplementedError

    def may_approve(self, request, obj) -> bool:
        return self.may_decide(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None and obj.status == PENDING and self.may_decide(request, obj):
            context["can_approve"] = obj.requested_by_id != request.user.pk and self.may_approve(request, obj)
            context["can_reject"] = True
        return super().change_view(request, object_id, form_url, extra_context=context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        name = f"{self.model._meta.app_label}_{self.model._meta.model_name}"
        return [
            path("<path:object_id>/approve/", wrap(self.approve_view), name=f"{name}_approve"),
            path("<path:object_id>/reject/", wrap(self.reject_view), name=f"{name}_reject"),
            *super().get_urls(),
        ]

    def waiting(self, request, object_id, *, approving: bool = False):
        """The object an Approve or Reject page is about: 404 outside the user's merchants, 403
        for a user who may not decide it (`approving`: approve it)."""
        obj = self.get_object(request, unquote(object_id))  # limited to the user's merchants
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404(f"No such {self.model._meta.verbose_name}.")
        allowed = self.may_approve(request, obj) if approving else self.may_decide(request, obj)
        if not allowed:
            raise PermissionDenied
        return obj
