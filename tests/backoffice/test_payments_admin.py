"""The payments back office: search and filters, a list without N+1, the payment page's whole
story, and who may open which action page (per role, and merchant limits by URL)."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payera.backoffice.models import StaffAction
from payments.backoffice.models import RefundApproval
from payments.models import PaymentAttempt, Refund
from tests.backoffice.payments import APPROVED, pay, settle
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

PAYMENTS = "/admin/payments/payment/"
REASON = {"reason": "ticket 4711: the shopper asked"}


def page_url(payment, action: str = "change") -> str:
    return f"{PAYMENTS}{quote(payment.pk)}/{action}/"


def shown(page) -> list[str]:
    return [obj.pk for obj in page.context["cl"].result_list]


@pytest.fixture
def paid(psp_settings, world):
    """Merchant A: a captured payment (alpha declined, beta approved) by ada@shop.test; merchant B: one too."""
    a = pay(world["A"].merchant, amount=12_345, email="Ada@Shop.test")
    b = pay(world["B"].merchant, amount=777, number=APPROVED, connectors=["alpha"])
    return {"A": a, "B": b}


# --- search and filters -----------------------------------------------------------------------------
def test_one_search_box_finds_a_payment_by_every_handle(client, role_users, paid, world):
    payment = paid["A"]
    attempts = list(PaymentAttempt.objects.filter(payment=payment).order_by("sequence"))
    assert [a.connector for a in attempts] == ["alpha", "beta"] and attempts[1].psp_reference
    otp_force_login(client, role_users["admin"])
    for term in (payment.pk, attempts[0].pk, attempts[1].psp_reference, f"psp:{attempts[1].psp_reference}",
                 world["A"].merchant.pk, "Merchant A", "0119", "last4:0119", "12345", "amount:12345",
                 "ada@shop.test", "email:ADA@shop.test"):
        page = client.get(PAYMENTS, {"q": term})
        assert page.status_code == 200, term
        assert shown(page) == [payment.pk], term
    assert shown(client.get(PAYMENTS, {"q": "777"})) == [paid["B"].pk]
    assert shown(client.get(PAYMENTS, {"q": "nothing-like-this"})) == []
    capture = payment.captures.get()
    assert shown(client.get(PAYMENTS, {"q": capture.pk})) == [payment.pk]


def test_search_lookups_are_limited_to_the_users_merchants_before_their_cap(client, role_users, world,
                                                                            psp_settings, monkeypatch):
    """A common last 4 matches many cards: the capped id list must be the user's own matches
    (merchant B's card is older, so an unlimited lookup capped at 1 would find only B's)."""
    monkeypatch.setattr("payments.admin.SEARCH_CAP", 1)
    b_paid = pay(world["B"].merchant, amount=600, number=APPROVED, connectors=["alpha"])
    a_paid = pay(world["A"].merchant, amount=700, number=APPROVED, connectors=["alpha"])
    otp_force_login(client, role_users["finance"])  # merchant A only
    assert shown(client.get(PAYMENTS, {"q": "last4:4242"})) == [a_paid.pk]
    assert shown(client.get(PAYMENTS, {"q": b_paid.captures.get().pk})) == []
    otp_force_login(client, role_users["admin"])
    assert shown(client.get(PAYMENTS, {"q": "last4:4242"})) == [b_paid.pk]  # the cap, unlimited


def test_a_limited_user_finds_only_their_merchants_payments(client, role_users, paid, world):
    otp_force_login(client, role_users["finance"])  # limited to merchant A
    assert shown(client.get(PAYMENTS)) == [paid["A"].pk]
    assert shown(client.get(PAYMENTS, {"q": paid["B"].pk})) == []
    assert shown(client.get(PAYMENTS, {"q": "Merchant B"})) == []
    page = client.get(PAYMENTS)
    assert b"Merchant B" not in page.content  # not even as a filter choice
    assert shown(client.get(PAYMENTS, {"merchant": world["B"].merchant.pk})) == []


def test_filters_by_status_connector_date_and_merchant(client, role_users, paid, world):
    manual = pay(world["A"].merchant, amount=500, number=APPROVED, capture_method="manual", connectors=["alpha"])
    otp_force_login(client, role_users["admin"])
    assert set(shown(client.get(PAYMENTS, {"status__exact": "requires_capture"}))) == {manual.pk}
    assert set(shown(client.get(PAYMENTS, {"status__exact": "succeeded"}))) == {paid["A"].pk, paid["B"].pk}
    # the approved card goes to alpha first; the 0119 card was tried on alpha, then beta
    assert set(shown(client.get(PAYMENTS, {"connector": "beta"}))) == {paid["A"].pk}
    assert set(shown(client.get(PAYMENTS, {"connector": "alpha"}))) == {paid["A"].pk, paid["B"].pk, manual.pk}
    assert set(shown(client.get(PAYMENTS, {"merchant": world["B"].merchant.pk}))) == {paid["B"].pk}
    today = paid["A"].created_at.date().isoformat()
    assert len(shown(client.get(PAYMENTS, {"created_at__gte": today}))) == 3
    assert shown(client.get(PAYMENTS, {"created_at__lt": "2000-01-01"})) == []


def test_the_list_runs_a_fixed_number_of_queries_however_many_rows(client, psp_settings, world, superuser,
                                                                    django_assert_max_num_queries):
    """No N+1: merchant, card, customer and connector come with the rows (list_select_related and a
    subquery), and no full count is run (show_full_result_count = False)."""
    merchant = world["A"].merchant
    otp_force_login(client, superuser)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(PAYMENTS, {"q": "", "status__exact": "succeeded"}).status_code == 200
        return len(ctx.captured_queries)

    for n in range(3):
        pay(merchant, amount=1000 + n, number=APPROVED, email=f"c{n}@shop.test", connectors=["alpha"])
    few = count_queries()
    for n in range(3, 24):
        pay(merchant, amount=1000 + n, number=APPROVED, email=f"c{n}@shop.test", connectors=["alpha"])
    many = count_queries()
    assert many == few, "queries grow with the number of rows (N+1)"
    with django_assert_max_num_queries(20):
        page = client.get(PAYMENTS)
    assert len(page.context["cl"].result_list) == 24
    assert b"4242" in page.content and b"c7@shop.test" in page.content and b"alpha" in page.content


# --- the payment page -------------------------------------------------------------------------------
def test_the_payment_page_tells_the_whole_story(client, role_users, paid, world, superuser):
    from payments.services import refund_create

    payment = paid["A"]
    refund = refund_create(merchant=world["A"].merchant, payment_id=payment.pk, amount=345)
    settle(payment.pk)
    otp_force_login(client, superuser)
    page = client.get(page_url(payment))
    assert page.status_code == 200
    story = page.context["story"]
    assert [a.connector for a in story.attempts] == ["alpha", "beta"]
    assert story.attempts[0].decline_code  # alpha's decline, normalized
    assert [r.pk for r in story.refunds] == [refund.pk]
    beta = story.attempts[1]
    assert {j.reference for j in story.journals} >= {f"capture:{beta.pk}", f"refund:{refund.pk}"}
    assert {e.type for e in story.events} >= {"payment.succeeded", "refund.succeeded"}
    assert story.deliveries and all(d.merchant_id == world["A"].merchant.pk for d in story.deliveries)
    assert story.transitions and story.audit is not None
    html = page.content.decode()
    for anchor in ("story-attempts", "story-captures", "story-refunds", "story-approvals", "story-disputes",
                   "story-ledger", "story-transitions", "story-events", "story-deliveries", "story-staff",
                   "story-audit"):
        assert f'id="{anchor}"' in html, anchor
    assert story.attempts[0].decline_code in html and f"capture:{beta.pk}" in html
    assert 'name="_save"' not in html and 'name="status"' not in html  # nothing to edit


def test_the_payment_page_runs_a_bounded_number_of_queries(client, paid, world, superuser):
    from payments.services import refund_create

    payment = paid["A"]
    otp_force_login(client, superuser)
    with CaptureQueriesContext(connection) as before:
        client.get(page_url(payment))
    for amount in (100, 200, 300, 400):
        refund_create(merchant=world["A"].merchant, payment_id=payment.pk, amount=amount)
    with CaptureQueriesContext(connection) as after:
        client.get(page_url(payment))
    assert len(after.captured_queries) <= len(before.captured_queries) + 2  # +journals' prefetch once there
    assert len(after.captured_queries) < 60


def test_only_readers_of_the_audit_trail_see_it_on_the_payment_page(client, role_users, paid):
    otp_force_login(client, role_users["finance"])
    page = client.get(page_url(paid["A"]))
    assert page.status_code == 200 and page.context["story"].audit is None
    assert b'id="story-audit"' not in page.content


@pytest.mark.parametrize("role", ["support", "operations"])
def test_only_readers_of_the_ledger_see_its_journals_on_the_payment_page(client, role_users, paid, role):
    """Was: the payment page showed the payment's ledger journals and their entries (accounts,
    platform fee and receivable legs, amounts) to every role that may open a payment, although
    ledger reads are the finance role's (`ledger.view_*`, docs/roles.md) and support and operations
    get 403 on the ledger's own pages. Now the journals are read and shown only for those who hold
    `ledger.view_journal`, as the audit records are for readers of the audit trail."""
    payment = paid["A"]
    otp_force_login(client, role_users[role])
    assert client.get("/admin/ledger/journal/").status_code == 403
    page = client.get(page_url(payment))
    assert page.status_code == 200 and page.context["story"].journals is None
    html = page.content.decode()
    assert 'id="story-ledger"' not in html and "data-journal=" not in html
    beta = [a for a in page.context["story"].attempts if a.connector == "beta"][0]
    assert f"capture:{beta.pk}" not in html and f"capture_fee:{beta.pk}" not in html
    otp_force_login(client, role_users["finance"])
    page = client.get(page_url(payment))
    assert f"capture:{beta.pk}" in page.content.decode() and 'id="story-ledger"' in page.content.decode()


# --- who may open what ------------------------------------------------------------------------------
ACTIONS = {  # action page -> roles that may open it
    "refund": {"finance", "admin"},
    "cancel": {"operations", "finance", "admin"},
    "recover": {"operations", "finance", "admin"},
}


@pytest.mark.parametrize("role", ["support", "operations", "finance", "admin"])
def test_each_role_opens_the_pages_and_only_its_actions(client, role_users, paid, role):
    otp_force_login(client, role_users[role])
    payment = paid["A"]
    assert client.get(PAYMENTS).status_code == 200
    page = client.get(page_url(payment))
    assert page.status_code == 200
    for action, roles in ACTIONS.items():
        response = client.get(page_url(payment, action))
        assert response.status_code == (200 if role in roles else 403), (action, role)
        assert client.post(page_url(payment, action), {**REASON, "amount": 1}).status_code in (
            (302,) if role in roles else (403,)), (action, role)
    assert (b'id="bo-refund"' in page.content) == (role in ACTIONS["refund"])
    assert (b'id="bo-recover"' in page.content) == (role in ACTIONS["recover"])
    assert Refund.objects.filter(payment=payment).count() == (1 if role in ACTIONS["refund"] else 0)
    for url in ("/admin/payments/refund/", "/admin/payments/paymentattempt/", "/admin/payments/capture/",
                "/admin/payments_backoffice/refundapproval/"):
        assert client.get(url).status_code == 200, url


def test_support_can_not_refund_through_the_service_either(role_users, paid):
    from payments.backoffice.services import StaffPermissionError, staff_refund_request

    with pytest.raises(StaffPermissionError):
        staff_refund_request(user=role_users["support"], payment_id=paid["A"].pk, amount=100, reason="x" * 10)
    assert not Refund.objects.exists()


@pytest.mark.parametrize("role", ["support", "operations", "finance"])
def test_staff_limited_to_merchant_a_get_nothing_of_merchant_b_by_url(client, role_users, paid, role):
    otp_force_login(client, role_users[role])
    b = paid["B"]
    response = client.get(page_url(b))
    assert response.status_code == 302 and response["Location"] == "/admin/"  # "does not exist"
    for action in ("refund", "cancel", "recover"):
        assert client.get(page_url(b, action)).status_code == 404, action
        assert client.post(page_url(b, action), {**REASON, "amount": 1}).status_code == 404, action
    assert not Refund.objects.filter(payment=b).exists()
    assert not StaffAction.objects.exists()


def test_a_limited_finance_user_can_not_refund_merchant_bs_payment_through_the_service(role_users, paid):
    from payera.core.errors import NotFoundError
    from payments.backoffice.services import staff_refund_request

    with pytest.raises(NotFoundError):
        staff_refund_request(user=role_users["finance"], payment_id=paid["B"].pk, amount=100, reason="x" * 10)
    assert not Refund.objects.exists() and not RefundApproval.objects.exists()


def test_cancel_from_the_payment_page_goes_through_the_service(client, role_users, world, psp_settings):
    payment = pay(world["A"].merchant, amount=900, number=APPROVED, capture_method="manual", connectors=["alpha"])
    otp_force_login(client, role_users["operations"])
    form = client.get(page_url(payment, "cancel"))
    assert b'name="reason"' in form.content
    assert client.post(page_url(payment, "cancel"), {"reason": ""}).status_code == 200  # a reason is required
    payment.refresh_from_db()
    assert payment.status == "requires_capture"
    assert client.post(page_url(payment, "cancel"), REASON).status_code == 302
    payment.refresh_from_db()
    assert payment.status == "canceled"
    transition = payment.events.get(object_type="payment", to_status="canceled")
    assert transition.actor == f"staff:{role_users['operations'].pk}"
    [record] = StaffAction.objects.all()
    assert (record.action, record.outcome, record.reason) == ("payments.cancel", "done", REASON["reason"])


def test_cancel_of_a_captured_payment_is_refused_and_recorded(client, role_users, paid):
    otp_force_login(client, role_users["operations"])
    assert client.post(page_url(paid["A"], "cancel"), REASON).status_code == 302
    paid["A"].refresh_from_db()
    assert paid["A"].status == "succeeded"
    [record] = StaffAction.objects.all()
    assert record.outcome == "refused" and record.detail


def test_recovery_from_the_page_resolves_an_unknown_attempt_by_asking_the_psp(client, role_users, world,
                                                                              psp_settings):
    """What a timeout leaves behind: the PSP authorized, we never heard (attempt `unknown`, payment
    `processing`). Re-running recovery from the page asks the PSP and records its answer."""
    from datetime import timedelta

    from django.utils import timezone

    from payments.models import Payment

    payment = pay(world["A"].merchant, amount=900, number=APPROVED, capture_method="manual", connectors=["alpha"])
    attempt = PaymentAttempt.objects.get(payment=payment)
    PaymentAttempt.objects.filter(pk=attempt.pk).update(status="unknown", created_at=timezone.now() - timedelta(
        minutes=5), next_inquiry_at=timezone.now() + timedelta(hours=1))
    Payment.objects.filter(pk=payment.pk).update(status="processing", amount_capturable=0)
    otp_force_login(client, role_users["operations"])
    assert client.post(page_url(payment, "recover"), REASON).status_code == 302
    attempt.refresh_from_db()
    payment.refresh_from_db()
    assert (attempt.status, payment.status, payment.amount_capturable) == ("authorized", "requires_capture", 900)
    [record] = StaffAction.objects.all()
    assert record.action == "payments.recover" and "attempts 1" in record.detail and "resolved 1" in record.detail


def test_operations_replay_a_payments_webhook_delivery_from_its_page(client, role_users, paid):
    from payera.events.models import DeliveryStatus, WebhookDelivery

    payment = paid["A"]
    otp_force_login(client, role_users["operations"])
    story = client.get(page_url(payment)).context["story"]
    delivery = story.deliveries[0]
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.DEAD, next_attempt_at=None)
    page = client.get(page_url(payment))
    assert b"bo-replay" in page.content
    url = f"{page_url(payment, 'deliveries')}{delivery.pk}/replay/"
    assert client.post(url, REASON).status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.replay_count) == (DeliveryStatus.PENDING, 1)
    # another merchant's delivery through this payment's URL: 404
    other = f"{page_url(payment, 'deliveries')}{paid_b_delivery(paid)}/replay/"
    assert client.post(other, REASON).status_code == 404
    otp_force_login(client, make_staff("sue", role="support"))
    assert client.post(url, REASON).status_code in (403, 404)


def paid_b_delivery(paid) -> str:
    from payera.events.models import WebhookDelivery

    return WebhookDelivery.objects.filter(merchant_id=paid["B"].merchant_id).values_list("pk", flat=True).first()


# --- read-only for everyone -------------------------------------------------------------------------
READ_ONLY = ["ledger.journal", "ledger.entry", "ledger.account", "events.event", "audit.auditlogentry",
             "audit.securityevent", "backoffice.staffaction", "payments.payment", "payments.refund",
             "payments.paymentattempt", "payments.capture", "payments.dispute", "payments_backoffice.refundapproval"]


@pytest.mark.parametrize("who", ["support", "operations", "finance", "admin", "superuser"])
def test_ledger_events_audit_and_payments_are_read_only_for_everyone(client, role_users, paid, superuser, who):
    from django.contrib import admin
    from django.test import RequestFactory

    from payera.staff.roles import sync_roles

    sync_roles()
    user = superuser if who == "superuser" else role_users[who]
    request = RequestFactory().get("/admin/")
    request.user = user
    registry = {model._meta.label_lower: model_admin for model, model_admin in admin.site._registry.items()}
    for label in READ_ONLY:
        model_admin = registry[label]
        assert not model_admin.has_add_permission(request), (label, who)
        assert not model_admin.has_change_permission(request), (label, who)
        assert not model_admin.has_delete_permission(request), (label, who)
    otp_force_login(client, user)
    payment = paid["A"]
    assert client.post(page_url(payment), {"status": "refunded", "amount_refunded": 1}).status_code == 403
    assert client.get(f"{PAYMENTS}add/").status_code == 403
    assert client.post(f"{PAYMENTS}{quote(payment.pk)}/delete/", {"post": "yes"}).status_code == 403
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", 0)


def test_no_role_holds_a_write_permission_on_ledger_events_or_audit(db):
    from django.contrib.auth.models import Group

    for role in ("support", "operations", "finance", "admin"):
        codenames = set(Group.objects.get(name=role).permissions.values_list(
            "content_type__app_label", "codename"))
        writes = {(app, code) for app, code in codenames
                  if app in ("ledger", "audit", "backoffice") and not code.startswith("view_")}
        writes |= {(app, code) for app, code in codenames if app == "events" and code.endswith("_event")
                   and not code.startswith("view_")}
        assert writes == set(), role
