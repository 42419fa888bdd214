"""Back-office list benchmark: `python -m bench.backoffice [--payments N] [--keep]`.

Fills its own database (payera_bench_backoffice, re-created) with N payments (default 1,000,000)
of 20 merchants by SQL (`generate_series`: a card and an attempt per payment, a customer per 10
payments, every 10th payment declined on alpha then approved on beta), ANALYZEs, then opens the
admin's payment list and payment page as a real signed-in staff member (Django's test client,
the whole middleware stack: session, TOTP-verified, guardian) and prints, for each page, the
median wall time of 5 loads, the number of SQL queries and the slowest query. Pages:
the unfiltered list, filters (status, connector, merchant, today), a limited user's list, the
search box (payment id, attempt id, PSP reference, merchant, last 4, amount, email), a payment's page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.db import django_on_own_database

DB = "payera_bench_backoffice"


FILL = """
INSERT INTO merchants_merchant (id, name, status, default_currency, settlement_delay_days, fee_schedule, connectors,
  created_at, updated_at, refund_approval_threshold, refund_approval_thresholds)
SELECT 'mer_bench' || lpad(m::text, 5, '0'), 'Bench shop ' || m, 'active', 'EUR', 2, 'standard', '["alpha","beta"]',
  now(), now(), 50000, '{}' FROM generate_series(1, 20) m;

INSERT INTO payments_customer (id, email, name, metadata, created_at, updated_at, merchant_id)
SELECT 'cus_bench' || lpad(c::text, 9, '0'), 'shopper' || c || '@example.test', '', '{}', now(), now(),
  'mer_bench' || lpad((c % 20 + 1)::text, 5, '0') FROM generate_series(1, {customers}) c;

INSERT INTO payments_paymentmethod (id, type, card_brand, card_bin, card_last4, card_exp_month, card_exp_year,
  fingerprint, pan_ciphertext, bank, iban_ciphertext, iban_last4, account_holder_name, psp_tokens, pan_key,
  iban_country, created_at, customer_id, merchant_id)
SELECT 'pm_bench' || lpad(p::text, 9, '0'), 'card', 'visa', '424242',
  lpad(((p::bigint * 7919) % 10000)::text, 4, '0'), 12, 2034, '', '', '', '', '', '', '{}', '', '',
  now() - (p || ' seconds')::interval, NULL,
  'mer_bench' || lpad((p % 20 + 1)::text, 5, '0') FROM generate_series(1, {payments}) p;

INSERT INTO payments_payment (id, amount, currency, capture_method, status, amount_capturable, amount_captured,
  amount_refunded, amount_disputed, setup_future_usage, off_session, return_url, description, metadata, review_reason,
  inflight, idempotency_key, authorized_at, created_at, updated_at, customer_id, merchant_id, payment_method_id)
SELECT 'pay_bench' || lpad(p::text, 9, '0'), 100 + (p * 37) % 100000, 'EUR', 'automatic',
  CASE WHEN p % 50 = 0 THEN 'failed' WHEN p % 97 = 0 THEN 'requires_capture' ELSE 'succeeded' END,
  0, CASE WHEN p % 50 = 0 OR p % 97 = 0 THEN 0 ELSE 100 + (p * 37) % 100000 END, 0, 0, '', false, '', '', '{}', '',
  '', '', now() - (p || ' seconds')::interval, now() - (p || ' seconds')::interval, now(),
  'cus_bench' || lpad((p % {customers} + 1)::text, 9, '0'), 'mer_bench' || lpad((p % 20 + 1)::text, 5, '0'),
  'pm_bench' || lpad(p::text, 9, '0')
FROM generate_series(1, {payments}) p;

INSERT INTO payments_paymentattempt (id, sequence, connector, status, amount, currency, capture, psp_reference,
  psp_currency, decline_code, decline_class, psp_decline_code, decline_message, error, action_url, inquiries,
  needs_attention, created_at, updated_at, merchant_id, payment_id, void_number)
SELECT 'att_bench' || lpad(p::text, 9, '0') || 'a', 1, 'alpha',
  CASE WHEN p % 10 = 0 THEN 'declined' ELSE 'captured' END, 100 + (p * 37) % 100000, 'EUR', true,
  'auth_' || md5(p::text), '', CASE WHEN p % 10 = 0 THEN 'processing_error' ELSE '' END, '', '', '', '', '', 0, false,
  now() - (p || ' seconds')::interval, now(), 'mer_bench' || lpad((p % 20 + 1)::text, 5, '0'),
  'pay_bench' || lpad(p::text, 9, '0'), 1
FROM generate_series(1, {payments}) p;

INSERT INTO payments_paymentattempt (id, sequence, connector, status, amount, currency, capture, psp_reference,
  psp_currency, decline_code, decline_class, psp_decline_code, decline_message, error, action_url, inquiries,
  needs_attention, created_at, updated_at, merchant_id, payment_id, void_number)
SELECT 'att_bench' || lpad(p::text, 9, '0') || 'b', 2, 'beta', 'captured', 100 + (p * 37) % 100000, 'EUR', true,
  'BETA' || upper(md5(p::text)), '', '', '', '', '', '', '', 0, false, now() - (p || ' seconds')::interval, now(),
  'mer_bench' || lpad((p % 20 + 1)::text, 5, '0'), 'pay_bench' || lpad(p::text, 9, '0'), 1
FROM generate_series(10, {payments}, 10) p;

ANALYZE;
"""


def measure(client, url: str, params: dict | None = None, runs: int = 5) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, queries = [], None
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(url, params or {})
            times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, params, response.status_code)
        queries = ctx.captured_queries
    rows = len(response.context["cl"].result_list) if response.context and "cl" in response.context else None
    slowest = max(queries, key=lambda q: float(q["time"]))
    return {"ms": round(statistics.median(times) * 1000, 1), "queries": len(queries), "rows": rows,
            "slowest_query_ms": round(float(slowest["time"]) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="reuse the filled database")
    args = parser.parse_args(argv)

    django_on_own_database(DB, keep=args.keep)
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's context (rows shown) and the "testserver" host
    fill_s = None
    if not args.keep:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            customers = str(max(1, args.payments // 10))
            sql = FILL.replace("{payments}", str(args.payments)).replace("{customers}", customers)
            cursor.execute(sql)
        fill_s = round(time.perf_counter() - started, 1)

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from payera.staff.access import staff_grant_merchant

    def signed_in(username: str, *, superuser: bool, merchant: str | None = None) -> Client:
        model = get_user_model()
        user = model.objects.filter(username=username).first() or (
            model.objects.create_superuser(username, f"{username}@bench.test", "bench-password-long")
            if superuser else model.objects.create_user(username, f"{username}@bench.test", "bench-password-long",
                                                        is_staff=True))
        if merchant:
            from django.contrib.auth.models import Group

            user.groups.add(Group.objects.get(name="finance"))
            staff_grant_merchant(user=user, merchant_id=merchant)
        device = TOTPDevice.objects.filter(user=user).first() or TOTPDevice.objects.create(user=user, name="b")
        client = Client()
        client.force_login(user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        return client

    root = signed_in("bench-root", superuser=True)
    limited = signed_in("bench-finance", superuser=False, merchant="mer_bench00007")
    n = args.payments
    mid = n // 2 - (n // 2) % 10  # a payment with two attempts
    with connection.cursor() as cursor:
        cursor.execute("SELECT psp_reference FROM payments_paymentattempt WHERE id = %s", [f"att_bench{mid:09d}b"])
        (psp_ref,) = cursor.fetchone()
    url = "/admin/payments/payment/"
    pages = {
        "list": (root, url, {}),
        "list, page 20": (root, url, {"p": 20}),
        "status=failed": (root, url, {"status__exact": "failed"}),
        "connector=beta": (root, url, {"connector": "beta"}),
        "merchant filter": (root, url, {"merchant": "mer_bench00003"}),
        "created today": (root, url, {"created_at__gte": time.strftime("%Y-%m-%d")}),
        "limited user's list": (limited, url, {}),
        "search payment id": (root, url, {"q": f"pay_bench{mid:09d}"}),
        "search attempt id": (root, url, {"q": f"att_bench{mid:09d}a"}),
        "search PSP reference": (root, url, {"q": psp_ref}),
        "search merchant id": (root, url, {"q": "mer_bench00011"}),
        "search last 4": (root, url, {"q": "last4:4242"}),
        "search amount": (root, url, {"q": "amount:4242"}),
        "search email": (root, url, {"q": "SHOPPER4242@example.test"}),
        "payment page": (root, f"{url}pay_bench{mid:09d}/change/", {}),
    }
    results = {"payments": n, "fill_seconds": fill_s}
    for name, (client, page, params) in pages.items():
        results[name] = measure(client, page, params)
        print(f"{name:24s} {json.dumps(results[name])}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
