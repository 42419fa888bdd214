"""Payments on the dashboard: today's volume, authorization rate per connector, unknown outcomes,
refunds waiting for a second approval. Each number is an indexed count or sum over today's rows
(or open rows), limited to the user's merchants."""

from __future__ import annotations

from django.db.models import Count, Q, Sum
from django.utils import timezone

from payera.backoffice.panels import Metric, Panel, panel_register
from payera.staff.access import staff_filter_merchants
from payments.backoffice.models import AP, RefundApproval
from payments.models import AS, PS, Payment, PaymentAttempt
from payments.services.recovery import RECOVERABLE

PAYMENTS = "/admin/payments/payment/"


def _today():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def volume_panel(request) -> list[Metric]:
    today = _today()
    payments = staff_filter_merchants(request.user, Payment.objects.filter(created_at__gte=today))
    rows = payments.filter(status=PS.SUCCEEDED).values("currency").annotate(total=Sum("amount_captured"))
    metrics = [Metric("payments today", payments.count(), url=f"{PAYMENTS}?created_at__gte={today.date()}")]
    metrics += [Metric(f"captured {row['currency']}", row["total"] or 0) for row in rows.order_by("currency")]
    return metrics


def authorization_rate_panel(request) -> list[Metric]:
    attempts = staff_filter_merchants(request.user, PaymentAttempt.objects.filter(created_at__gte=_today()))
    rows = attempts.values("connector").annotate(
        decided=Count("id", filter=Q(status__in=[AS.AUTHORIZED, AS.CAPTURED, AS.VOIDED, AS.DECLINED])),
        approved=Count("id", filter=Q(status__in=[AS.AUTHORIZED, AS.CAPTURED, AS.VOIDED])),
    ).order_by("connector")
    metrics = []
    for row in rows:
        if not row["decided"]:
            continue
        rate = round(100 * row["approved"] / row["decided"], 1)
        metrics.append(Metric(row["connector"], f"{rate} %", url=f"{PAYMENTS}?connector={row['connector']}",
                              level="ok" if rate >= 80 else "warn" if rate >= 60 else "bad"))
    return metrics or [Metric("no decided attempts today", "-")]


def unknown_outcomes_panel(request) -> list[Metric]:
    open_ = staff_filter_merchants(request.user, PaymentAttempt.objects.filter(status__in=RECOVERABLE))
    unknown = open_.filter(status=AS.UNKNOWN).count()
    attention = open_.filter(needs_attention=True).count()
    waiting = staff_filter_merchants(request.user, RefundApproval.objects.filter(status=AP.PENDING)).count()
    return [
        Metric("unknown outcomes", unknown, url="/admin/payments/paymentattempt/?status__exact=unknown",
               level="warn" if unknown else "ok"),
        Metric("needing attention", attention, url="/admin/payments/paymentattempt/?needs_attention__exact=1",
               level="bad" if attention else "ok"),
        Metric("refunds awaiting approval", waiting,
               url="/admin/payments_backoffice/refundapproval/?status__exact=pending",
               level="warn" if waiting else "ok"),
    ]


def register() -> None:
    panel_register(Panel(key="payments.volume", title="Today's volume", order=5,
                         permissions=("payments.view_payment",), compute=volume_panel))
    panel_register(Panel(key="payments.authorization_rate", title="Authorization rate today, per connector",
                         order=6, permissions=("payments.view_paymentattempt",), compute=authorization_rate_panel))
    panel_register(Panel(key="payments.unknown_outcomes", title="Unknown outcomes and approvals", order=7,
                         permissions=("payments.view_paymentattempt",), compute=unknown_outcomes_panel))
