"""Back office for payments (docs/backoffice.md): read-only pages, and actions that go through
services only.

- The payment list: one search box for a payment id, a PSP reference, a merchant (id or name), a
  card's last 4, an amount (minor units) or a customer's email (`payment_search_q`), filters by
  status, connector, date and merchant; built for 1M payments (indexed lookups, `list_select_related`,
  a subquery for the connector column, no full count).
- The payment page tells the whole story on one screen (`payments.backoffice.selectors.payment_story`).
- Actions: refund (four eyes above the merchant's threshold), cancel, re-run recovery, replay a
  webhook delivery. Each asks for a reason on a page of its own, checks its permission, and calls a
  service (`payments.backoffice.services`). No status is editable anywhere.
The decline-code table is the one editable table (it overrides the adapters' mapping).
"""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, Subquery
from django.http import Http404
from django.urls import path, reverse

from payera.backoffice.actions import ReasonForm, reason_action, reason_page
from payera.backoffice.models import StaffActionOutcome
from payera.core.money import currency_exponent
from payera.events.services import delivery_replay
from payera.staff.access import (
    staff_can_access_merchant,
    staff_filter_merchants,
    staff_has_all_merchants,
    staff_merchant_ids,
)
from payera.staff.admin import CappedCountPaginator, MerchantScopedAdminMixin
from payments.backoffice import services as staff
from payments.backoffice.selectors import payment_delivery_get, payment_story
from payments.models import (
    BinRange,
    Booking,
    Capture,
    Customer,
    DeclineCode,
    Dispute,
    OperationStatus,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    PaymentStatus,
    PspWebhook,
    Refund,
    RoutingRule,
    SepaMandate,
    StuckItem,
    Subscription,
    SubscriptionCharge,
)
from payments.services.bookings import booking_expire

REPLAY_PERMISSION = "events.replay_delivery"
AUDIT_PERMISSION = "audit.view_auditlogentry"
LEDGER_PERMISSION = "ledger.view_journal"


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "-"
    exponent = currency_exponent(currency) if currency else 0
    if exponent == 0:
        return f"{amount} {currency}"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d} {currency}"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- search ---------------------------------------------------------------------------------------
_PREFIXED = re.compile(r"^(id|psp|merchant|last4|amount|email):\s*(\S.*)$", re.IGNORECASE)
_OUR_ID = re.compile(r"^(pay|att|re|cap|dp|mer|cus|pm)_[A-Za-z0-9]+$")
_MASKED_CARD = re.compile(r"^\d{6}\*{3,9}\d{4}$")
SEARCH_CAP = 1000  # ids a term may resolve to (a last 4 or an email of a busy shopper)


def payment_search_q(term: str, *, merchant_ids: set[str] | None = None) -> Q:
    """What one search box term means. Each meaning is resolved by its own indexed lookup to ids
    first, so the list query is a plain `IN (...)` or column condition on the payments table (an
    OR of EXISTS over joins would scan it):
    `pay_…` the payment; `att_…`/`re_…`/`cap_…`/`dp_…` its attempt, refund, capture, dispute;
    `mer_…` a merchant; `cus_…`/`pm_…` a customer or payment method; an email the customer's
    (case-insensitive); a card number (masked by the site: `411111******1111`) its BIN and last 4;
    4 digits a card's last 4 or an amount; other digits an amount in minor
    units; anything else a PSP reference or a merchant's name. `last4:`, `amount:`, `email:`,
    `psp:`, `merchant:` and `id:` force one meaning. `merchant_ids` (None: all) limits the lookups
    too, so the capped id lists are the user's own matches."""
    from payera.merchants.models import Merchant

    def _ids(qs, field: str = "payment_id", merchant_field: str = "merchant_id") -> list[str]:
        if merchant_ids is not None:
            qs = qs.filter(**{f"{merchant_field}__in": sorted(merchant_ids)})
        return list(qs.values_list(field, flat=True)[:SEARCH_CAP])

    def _psp_reference_ids(term: str) -> list[str]:
        return _ids(PaymentAttempt.objects.filter(psp_reference=term)) + _ids(
            Refund.objects.filter(psp_reference=term))

    term = term.strip()
    match = _PREFIXED.match(term)
    kind, value = (match.group(1).lower(), match.group(2).strip()) if match else ("", term)
    by_last4 = lambda v: Q(payment_method_id__in=_ids(PaymentMethod.objects.filter(card_last4=v), "pk"))  # noqa: E731
    by_email = lambda v: Q(customer_id__in=_ids(Customer.objects.filter(email__iexact=v), "pk"))  # noqa: E731
    by_amount = lambda v: Q(amount=int(v)) if v.isdigit() and len(v) < 19 else Q(pk__in=[])  # noqa: E731
    by_names = lambda v: Q(merchant_id__in=_ids(Merchant.objects.filter(name__icontains=v), "pk", "pk"))  # noqa: E731
    if kind == "id":
        return Q(pk=value)
    if kind == "psp":
        return Q(pk__in=_psp_reference_ids(value))
    if kind == "merchant":
        return Q(merchant_id=value) | by_names(value)
    if kind == "last4":
        return by_last4(value)
    if kind == "amount":
        return by_amount(value)
    if kind == "email":
        return by_email(value)
    if _OUR_ID.match(term):
        prefix = term.split("_", 1)[0]
        children = {"att": (PaymentAttempt, "merchant_id"), "re": (Refund, "merchant_id"),
                    "cap": (Capture, "payment__merchant_id"), "dp": (Dispute, "merchant_id")}
        if prefix in children:
            model, merchant_field = children[prefix]
            found = _ids(model.objects.filter(pk=term), merchant_field=merchant_field)
            return Q(pk__in=found + _psp_reference_ids(term))
        field = {"pay": "pk", "mer": "merchant_id", "cus": "customer_id", "pm": "payment_method_id"}[prefix]
        return Q(**{field: term}) | Q(pk__in=_psp_reference_ids(term))
    if "@" in term:
        return by_email(term)
    if _MASKED_CARD.match(term):  # a card number, masked by the site before it got here
        return Q(payment_method_id__in=_ids(PaymentMethod.objects.filter(
            card_last4=term[-4:], card_bin__startswith=term[:6]), "pk"))
    if term.isdigit():
        return (by_last4(term) | by_amount(term)) if len(term) == 4 else by_amount(term)
    return Q(pk__in=_psp_reference_ids(term)) | by_names(term)


# --- list filters ---------------------------------------------------------------------------------
class MerchantFilter(admin.SimpleListFilter):
    """The merchants the user may see (never others' names), by name."""

    title = "merchant"
    parameter_name = "merchant"

    def lookups(self, request, model_admin):
        from payera.merchants.models import Merchant

        merchants = staff_filter_merchants(request.user, Merchant.objects.all(), field="pk")
        return list(merchants.order_by("name").values_list("pk", "name")[:200])

    def queryset(self, request, queryset):
        return queryset.filter(merchant_id=self.value()) if self.value() else queryset


class ConnectorFilter(admin.SimpleListFilter):
    """Payments with an attempt on the connector."""

    title = "connector"
    parameter_name = "connector"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(getattr(settings, "PSP_CONNECTORS", {}))]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(Exists(PaymentAttempt.objects.filter(payment=OuterRef("pk"), connector=self.value())))


# --- action forms ---------------------------------------------------------------------------------
class RefundForm(ReasonForm):
    amount = forms.IntegerField(min_value=1, help_text="In minor units of the payment's currency (1000 = 10.00 EUR).")
    field_order = ["amount", "reason"]


# --- payments -------------------------------------------------------------------------------------
@admin.register(Payment)
class PaymentAdmin(MerchantScopedAdminMixin, ReadOnlyAdmin):
    list_display = ("id", "merchant", "status", "amount_display", "connector", "card", "customer_email",
                    "created_at")
    list_filter = ("status", ConnectorFilter, ("created_at", admin.DateFieldListFilter), MerchantFilter)
    list_select_related = ("merchant", "payment_method", "customer")
    search_fields = ("id",)  # the box is shown; `get_search_results` decides what a term means
    search_help_text = ("A payment id (pay_…) or one of its attempts, refunds, captures, disputes; a PSP reference; "
                        "a merchant id or name; a card's last 4; an amount in minor units; a customer's email.")
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    ordering = ("-created_at", "-id")
    change_form_template = "payments_backoffice/payment_change_form.html"
    fieldsets = (
        (None, {"fields": ("id", "merchant", "status", "amounts", "capture_method", "created_at", "authorized_at",
                           "updated_at")}),
        ("Shopper", {"fields": ("customer", "customer_email", "card", "description")}),
        ("Attention", {"fields": ("review_reason", "last_error", "next_action", "inflight", "inflight_at")}),
    )
    readonly_fields = ("id", "merchant", "status", "amounts", "capture_method", "created_at", "authorized_at",
                       "updated_at", "customer", "customer_email", "card", "description", "review_reason",
                       "last_error", "next_action", "inflight", "inflight_at")

    def get_queryset(self, request):
        latest = PaymentAttempt.objects.filter(payment=OuterRef("pk")).order_by("-sequence").values("connector")[:1]
        return super().get_queryset(request).annotate(last_connector=Subquery(latest))

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(payment_search_q(search_term, merchant_ids=staff_merchant_ids(request.user))), False

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj) -> str:
        return money(obj.amount, obj.currency)

    @admin.display(description="amounts")
    def amounts(self, obj) -> str:
        parts = [("amount", obj.amount), ("capturable", obj.amount_capturable), ("captured", obj.amount_captured),
                 ("refunded", obj.amount_refunded), ("disputed", obj.amount_disputed)]
        return " · ".join(f"{label} {money(value, obj.currency)}" for label, value in parts)

    @admin.display(description="connector")
    def connector(self, obj) -> str:
        return getattr(obj, "last_connector", None) or "-"

    @admin.display(description="card")
    def card(self, obj) -> str:
        pm = obj.payment_method
        if pm is None:
            return "-"
        if pm.card_last4:
            return f"{pm.card_brand} •••• {pm.card_last4}"
        return pm.type

    @admin.display(description="customer email")
    def customer_email(self, obj) -> str:
        return obj.customer.email if obj.customer_id and obj.customer else ""

    # --- permissions of the actions (the services check them again) -------------------------------
    def has_refund_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(staff.REFUND_PERMISSION)

    def has_cancel_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(staff.CANCEL_PERMISSION)

    def has_recover_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(staff.RECOVER_PERMISSION)

    def has_replay_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(REPLAY_PERMISSION)

    # --- the page --------------------------------------------------------------------------------
    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None and self.has_view_permission(request, obj):
            story = payment_story(payment=obj, with_audit=request.user.has_perm(AUDIT_PERMISSION),
                                  with_ledger=request.user.has_perm(LEDGER_PERMISSION))
            context.update(self._story_context(request, story))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _story_context(self, request, story) -> dict:
        payment = story.payment
        can = {
            "refund": self.has_refund_permission(request) and payment.status == PaymentStatus.SUCCEEDED
            and payment.amount_refunded < payment.amount_captured,
            "cancel": self.has_cancel_permission(request) and payment.status in (
                PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.REQUIRES_ACTION, PaymentStatus.REQUIRES_CONFIRMATION,
                PaymentStatus.REQUIRES_PAYMENT_METHOD),
            "recover": self.has_recover_permission(request),
            "replay": self.has_replay_permission(request),
        }
        pending_refunds = [r for r in story.refunds if r.status == OperationStatus.PENDING]
        journals = None if story.journals is None else [  # None: the viewer may not read the ledger
            (j, [(e, money(e.amount, e.currency)) for e in j.entries.all()]) for j in story.journals]
        return {"story": story, "can": can, "pending_refunds": pending_refunds, "journals": journals}

    # --- actions: one page each, with a reason -----------------------------------------------------
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/refund/", wrap(self.refund_view), name="payments_payment_refund"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="payments_payment_cancel"),
            path("<path:object_id>/recover/", wrap(self.recover_view), name="payments_payment_recover"),
            path("<path:object_id>/deliveries/<str:delivery_id>/replay/", wrap(self.replay_view),
                 name="payments_payment_replay"),
            *super().get_urls(),
        ]

    def _payment_or_404(self, request, object_id, allowed: bool) -> Payment:
        obj = self.get_object(request, unquote(object_id))  # limited to the user's merchants
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("No such payment.")
        if not allowed:
            raise PermissionDenied
        return obj

    def _page_url(self, obj) -> str:
        return reverse("admin:payments_payment_change", args=[quote(obj.pk)])

    def refund_view(self, request, object_id):
        payment = self._payment_or_404(request, object_id, self.has_refund_permission(request))

        def perform(obj, data):
            result = staff.staff_refund_request(user=request.user, payment_id=obj.pk, amount=data["amount"],
                                                reason=data["reason"])
            if result.approval is not None:
                return StaffActionOutcome.REQUESTED, (
                    f"refund of {money(result.approval.amount, result.approval.currency)} waits for a second "
                    f"finance user's approval ({result.approval.id})")
            refund = result.refund
            if refund.status == OperationStatus.FAILED:
                return StaffActionOutcome.REFUSED, f"refund {refund.id} failed: {refund.failure_code}"
            amount = money(refund.amount, refund.currency)
            return StaffActionOutcome.DONE, f"refund {refund.id} of {amount} {refund.status}"

        left = staff.refundable_left(payment)
        threshold = payment.merchant.refund_approval_threshold_for(payment.currency)
        return reason_page(
            self, request, payment, action="payments.refund", form_class=RefundForm, initial={"amount": left},
            title=f"Refund payment (up to {money(left, payment.currency)}; above "
                  f"{money(threshold, payment.currency)} refunded without "
                  "approval, this one included, a second finance user approves)", button="Refund", perform=perform,
            done_url=self._page_url(payment))

    def cancel_view(self, request, object_id):
        payment = self._payment_or_404(request, object_id, self.has_cancel_permission(request))

        def perform(obj, data):
            done = staff.staff_payment_cancel(user=request.user, payment_id=obj.pk)
            return StaffActionOutcome.DONE, f"payment {done.status}"

        return reason_page(self, request, payment, action="payments.cancel", title="Cancel payment (void at the PSP)",
                           button="Cancel payment", perform=perform, done_url=self._page_url(payment))

    def recover_view(self, request, object_id):
        payment = self._payment_or_404(request, object_id, self.has_recover_permission(request))

        def perform(obj, data):
            counts = staff.staff_payment_recover(user=request.user, payment_id=obj.pk)
            asked = ", ".join(f"{k} {v}" for k, v in counts.items())
            return StaffActionOutcome.DONE, f"recovery asked the PSP: {asked}"

        return reason_page(self, request, payment, action="payments.recover", title="Re-run recovery (ask the PSP)",
                           button="Ask the PSP", perform=perform, done_url=self._page_url(payment))

    def replay_view(self, request, object_id, delivery_id):
        payment = self._payment_or_404(request, object_id, self.has_replay_permission(request))
        # only the payment's own deliveries (its page's links quote the id as the admin does)
        delivery = payment_delivery_get(payment=payment, delivery_id=unquote(delivery_id))
        if delivery is None:
            raise Http404("No such delivery of this payment.")

        def perform(obj, data):
            delivery_replay(delivery_id=obj.pk, merchant_id=payment.merchant_id)
            return StaffActionOutcome.DONE, "queued for replay"

        return reason_page(self, request, delivery, action="events.replay_delivery",
                           title=f"Replay webhook delivery of {payment.pk}", button="Replay", perform=perform,
                           done_url=self._page_url(payment))


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(MerchantScopedAdminMixin, ReadOnlyAdmin):
    list_display = ("id", "payment", "connector", "status", "decline_code", "needs_attention", "inquiries",
                    "next_inquiry_at", "created_at")
    list_filter = ("status", "connector", "needs_attention")
    search_fields = ("=id", "=payment__id", "=psp_reference")
    show_full_result_count = False


class PaymentChildAdmin(MerchantScopedAdminMixin, ReadOnlyAdmin):
    """A model reached from its payment: limited to the user's merchants through it."""

    merchant_field = "payment__merchant_id"
    list_select_related = ("payment",)
    show_full_result_count = False

    def merchant_id_of(self, obj) -> str:
        return str(obj.payment.merchant_id)


@admin.register(Capture)
class CaptureAdmin(PaymentChildAdmin):
    list_display = ("id", "payment", "amount", "currency", "fee", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "=payment__id", "=psp_reference")


@admin.register(Refund)
class RefundAdmin(MerchantScopedAdminMixin, ReadOnlyAdmin):
    list_display = ("id", "payment", "amount", "currency", "status", "failure_code", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "=payment__id", "=psp_reference")
    show_full_result_count = False


@admin.register(Dispute)
class DisputeAdmin(MerchantScopedAdminMixin, ReadOnlyAdmin):
    list_display = ("id", "payment", "amount", "currency", "fee", "reason", "status", "connector", "created_at")
    list_filter = ("status", "reason", "connector")
    search_fields = ("=id", "=payment__id", "=psp_dispute_id")
    show_full_result_count = False


@admin.register(PspWebhook)
class PspWebhookAdmin(ReadOnlyAdmin):
    """The PSPs' inbox spans every merchant: only staff who see every merchant see it."""

    list_display = ("connector", "event_id", "kind", "reference", "status", "tries", "note", "received_at")
    list_filter = ("connector", "status", "kind")
    search_fields = ("=event_id", "=reference")
    show_full_result_count = False

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if staff_has_all_merchants(request.user) else qs.none()

    def has_view_permission(self, request, obj=None) -> bool:
        return super().has_view_permission(request, obj) and staff_merchant_ids(request.user) is None


@admin.register(DeclineCode)
class DeclineCodeAdmin(admin.ModelAdmin):
    list_display = ("psp", "psp_code", "code", "decline_class", "updated_at")
    list_filter = ("psp", "decline_class")
    list_editable = ("code", "decline_class")


@admin.register(SepaMandate)
class SepaMandateAdmin(ReadOnlyAdmin):
    """SEPA mandates: the evidence of the shopper's authorization. The account shows masked
    (country and last 4, through the payment method's str); the IBAN is only stored encrypted."""

    list_display = ("id", "reference", "merchant", "payment_method", "status", "signed_at", "shopper_ip")
    list_filter = ("status",)
    search_fields = ("id", "reference", "payment_method__id")
    fields = ("id", "reference", "merchant", "payment_method", "status", "inactive_reason", "inactive_at",
              "signed_at", "shopper_ip", "shopper_user_agent", "created_at")
    readonly_fields = fields


@admin.register(StuckItem)
class StuckItemAdmin(ReadOnlyAdmin):
    """What the stuck-state sweeper re-drove or flagged; open items first. Read-only: the sweeper
    clears an item once its object moved on."""

    list_display = ("object_type", "object_id", "state", "since", "sla_seconds", "is_flagged", "redrives",
                    "last_result", "reason", "cleared_at")
    list_filter = ("object_type", "state", ("cleared_at", admin.EmptyFieldListFilter),
                   ("flagged_at", admin.EmptyFieldListFilter))
    search_fields = ("object_id", "payment__id")
    list_select_related = ("payment",)
    ordering = ("-cleared_at", "-since")

    @admin.display(boolean=True, description="flagged")
    def is_flagged(self, obj: StuckItem) -> bool:
        return obj.flagged_at is not None and obj.cleared_at is None


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    """Per-merchant routing (operations edits; validated by RoutingRule.clean; audited). A
    merchant without enabled rules is routed by its ordered connectors list."""

    list_display = ("merchant", "priority", "connector", "weight", "currencies", "min_amount", "max_amount", "brands",
                    "bin_countries", "method_types", "enabled", "updated_at")
    list_filter = ("enabled", "connector")
    search_fields = ("merchant__id", "merchant__name", "connector")
    list_select_related = ("merchant",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "merchant":
            from payera.merchants.models import Merchant

            kwargs["queryset"] = staff_filter_merchants(request.user, Merchant.objects.all(), field="pk")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not staff_can_access_merchant(request.user, obj.merchant_id):
            raise PermissionDenied
        super().save_model(request, obj, form, change)


@admin.register(BinRange)
class BinRangeAdmin(admin.ModelAdmin):
    list_display = ("prefix", "country", "issuer", "updated_at")
    search_fields = ("prefix", "country", "issuer")
class SubscriptionChargeInline(admin.TabularInline):
    model = SubscriptionCharge
    fields = ("period", "try_number", "idempotency_key", "payment", "status", "decline_code", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Read-only; the one action cancels (payments.cancel_subscription: the operations role)."""

    list_display = ("id", "merchant", "customer", "status", "amount", "currency", "interval", "interval_count",
                    "current_period", "next_charge_at", "retries", "created_at")
    list_filter = ("status", "interval", "currency")
    search_fields = ("=id", "=merchant__id", "=customer__id")
    exclude = ("metadata",)
    inlines = [SubscriptionChargeInline]
    actions = ["cancel_subscriptions"]

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("payments.cancel_subscription")

    @admin.action(description="Cancel selected subscriptions (no further charge; asks why)", permissions=["cancel"])
    def cancel_subscriptions(self, request, queryset):
        from payments.services import subscription_cancel

        def perform(sub, data):
            done = subscription_cancel(merchant=sub.merchant, subscription_id=sub.id, actor=f"staff:{request.user.pk}")
            return StaffActionOutcome.DONE, f"subscription {done.status}"

        return reason_action(self, request, queryset.select_related("merchant"), action="payments.subscription_cancel",
                             title="Cancel subscriptions (no further charge)", button="Cancel subscriptions",
                             perform=perform)


# --- Bookings (escrow) -------------------------------------------------------------------
def _booking_perform(action, verb: str):
    """An action's `perform` for a booking (payera.backoffice.actions): a booking not due (or
    busy) is recorded `refused`, unchanged; the service's refusals and PSP errors (`PayeraError`s)
    are recorded `refused` by the action itself."""

    def perform(booking, data):
        if action(booking) is False:
            return StaffActionOutcome.REFUSED, "not due (or busy): unchanged"
        return StaffActionOutcome.DONE, verb

    return perform


@admin.register(Booking)
class BookingAdmin(ReadOnlyAdmin):
    """Read-only; the actions are the booking's transitions, through its services."""

    list_display = ("id", "merchant", "reference", "status", "amount", "currency", "amount_captured",
                    "amount_released", "amount_refunded", "hold_expires_at", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("id", "reference", "payment__id", "merchant__id")
    list_select_related = ("merchant",)
    exclude = ("metadata",)
    actions = ["cancel_bookings", "expire_bookings"]

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("payments.cancel_booking")

    @admin.action(description="Cancel selected bookings (void the hold, or refund the escrow; asks why)",
                  permissions=["cancel"])
    def cancel_bookings(self, request, queryset):
        def perform(booking, data):
            # whether it refunds, and whether that needs four eyes, is decided under the booking's
            # lock (payments.backoffice.services.staff_booking_cancel), not from this row
            result = staff.staff_booking_cancel(user=request.user, booking_id=booking.pk, reason=data["reason"])
            if result.approval is not None:
                approval = result.approval
                return StaffActionOutcome.REQUESTED, (
                    f"cancel refunds {money(approval.amount, approval.currency)} out of escrow, above the "
                    f"approval threshold: it waits for a second finance user's approval ({approval.id}, "
                    "Refund approvals); the booking is unchanged until then")
            return StaffActionOutcome.DONE, "canceled"

        return reason_action(self, request, queryset.select_related("merchant"), action="payments.booking_cancel",
                             title="Cancel bookings (void the hold, or refund the escrow; above the merchant's "
                                   "approval threshold a second finance user approves the refund)",
                             button="Cancel bookings", perform=perform)

    @admin.action(description="Expire selected bookings now if their hold has passed (asks why)",
                  permissions=["cancel"])
    def expire_bookings(self, request, queryset):
        return reason_action(self, request, queryset, action="payments.booking_expire",
                             title="Expire bookings whose hold has passed", button="Expire bookings",
                             perform=_booking_perform(lambda b: booking_expire(booking_id=b.pk), "expired"))
