"""The load run's checker (bench/load/checker.py) finds what it promises to find: a clean run has
0 discrepancies; an authorization no attempt owns, amounts that differ from the PSP's, a ledger
that differs from the payments, a payment left open, and one key with two effects are each
reported."""

from __future__ import annotations

import copy

import pytest

from bench.load.checker import check
from payments.models import Payment
from payments.services import payment_create, refund_create
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def run(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    made = []
    for i, manual in enumerate((False, False, True)):
        p = payment_create(merchant=merchant, amount=1000 + i, currency="EUR", payment_method_data=CARD,
                           capture_method="manual" if manual else "automatic", metadata={"load_key": f"k{i}"})
        made.append(p)
    refund_create(merchant=merchant, payment_id=made[0].id, amount=333)
    views = {"alpha": [], "beta": []}
    for p in made:
        for a in p.attempts.all():
            views["alpha"] += psp_settings["alpha"].payments(a.id)
    driver = {"payments": {p.id: {"refund_keys": ["r"] if p == made[0] else [], "op_keys": [],
                                  "leave_open": p == made[2]} for p in made},
              "key_answers": {"k0": [made[0].id, made[0].id]}}
    return {"sandboxes": views, "driver": driver}, made


def test_a_consistent_run_has_no_discrepancy(run):
    data, _ = run
    result = check(data)
    assert result["discrepancies"] == []
    assert result["facts"]["payments"] == 3 and result["facts"]["refunded"] == 333


def test_an_authorization_without_attempt_and_other_amounts_are_found(run):
    data, made = run
    bad = copy.deepcopy(data)
    ghost = copy.deepcopy(bad["sandboxes"]["alpha"][0])
    ghost.update(id="auth_GHOST", reference="att_ghost")
    bad["sandboxes"]["alpha"].append(ghost)
    bad["sandboxes"]["alpha"][0]["amount_refunded"] += 1
    problems = "\n".join(check(bad)["discrepancies"])
    assert "auth_GHOST (att_ghost) has no Payera attempt" in problems
    assert "refunded 333 at Payera, 334 at alpha" in problems


def test_ledger_mismatch_open_payment_and_double_effect_are_found(run):
    data, made = run
    # the payments say more was captured than the ledger holds
    Payment.objects.filter(pk=made[1].id).update(amount_captured=5)
    # the manual payment was not left open on purpose
    data["driver"]["payments"][made[2].id]["leave_open"] = False
    # one key answered with two different objects, and two payments for one create key
    data["driver"]["key_answers"]["k1"] = [made[1].id, made[0].id]
    Payment.objects.filter(pk=made[2].id).update(metadata={"load_key": "k0"})
    problems = "\n".join(check(data)["discrepancies"])
    assert f"payment {made[1].id}: captured/refunded 5/0" in problems
    assert f"payment {made[2].id} left requires_capture" in problems
    assert "key k1 was answered with different objects" in problems
    assert "create key k0 made 2 payments" in problems


def test_ledger_balance_differing_from_the_payments_is_found(run):
    data, made = run
    from django.utils import timezone

    from ledger.services import journal_post
    from ledger.types import Accounts, transfer_lines

    journal_post(reference="stray:1", kind="adjustment", memo="stray", occurred_at=timezone.now(), lines=transfer_lines(
        debit=Accounts.fee_revenue("EUR"), credit=Accounts.merchant_pending(str(made[0].merchant_id), "EUR"),
        amount=7))
    problems = "\n".join(check(data)["discrepancies"])
    assert f"merchant {made[0].merchant_id} pending EUR" in problems
    assert "fee_revenue EUR" in problems
