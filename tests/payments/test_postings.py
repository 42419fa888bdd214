"""Pure journal lines and fees: balanced, and refund fee shares add up to the fee exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from payments.postings import (
    FeeRule,
    capture_journals,
    chargeback_journals,
    fee_rule,
    refund_fee_back,
    refund_fee_share,
    refund_journals,
)


@given(gross=st.integers(1, 10**12), bp=st.integers(0, 10000), fixed=st.integers(0, 10000),
       currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_fee_is_between_zero_and_gross(gross, bp, fixed, currency):
    assert 0 <= FeeRule(bp, fixed).fee(gross, currency) <= gross


def test_standard_card_fee_scales_fixed_part_to_the_currency():
    rule = fee_rule({"standard": {"card": {"percent_bp": 290, "fixed": 30}}}, "gold", "card")
    assert rule.fee(1000, "EUR") == 29 + 30
    assert rule.fee(1000, "JPY") == 29  # 0.30 JPY rounds to 0
    assert rule.fee(1000, "KWD") == 29 + 300


@given(gross=st.integers(1, 10**9), fee=st.integers(0, 10**6),
       parts=st.lists(st.integers(1, 10**9), min_size=1, max_size=8))
def test_refund_fee_shares_sum_to_the_fee_when_all_is_refunded(gross, fee, parts):
    fee = min(fee, gross)
    # split `gross` into refunds in the proportions of `parts`
    total = sum(parts)
    amounts = [gross * p // total for p in parts]
    amounts[-1] += gross - sum(amounts)
    amounts = [a for a in amounts if a > 0]
    before, returned = 0, 0
    for amount in amounts:
        share = refund_fee_share(fee=fee, captured=gross, refunded_before=before, refund=amount)
        assert 0 <= share <= fee
        returned += share
        before += amount
    assert returned == fee


@given(gross=st.integers(1, 10**9), fee=st.integers(0, 10**6))
def test_journals_are_balanced(gross, fee):
    fee = min(fee, gross)
    for j in capture_journals(attempt_id="att_1", merchant_id="mer_1", connector="alpha", gross=gross, fee=fee,
                              currency="EUR") + refund_journals(refund_id="re_1", merchant_id="mer_1",
                                                                connector="alpha", amount=gross, fee_back=fee,
                                                                currency="EUR"):
        assert sum(line.amount for line in j.lines) == 0


@given(amount=st.integers(1, 10**12), fee=st.integers(0, 10**6))
def test_chargeback_and_its_win_are_balanced_and_cancel_out(amount, fee):
    args = {"dispute_id": "dp_1", "merchant_id": "mer_1", "connector": "alpha", "amount": amount, "fee": fee,
            "currency": "EUR"}
    opened, won = chargeback_journals(**args), chargeback_journals(**args, won=True)
    assert [j.reference for j in opened] == ["chargeback:dp_1", "chargeback_fee:dp_1"][: 1 + (fee > 0)]
    assert [j.reference for j in won] == ["chargeback_won:dp_1", "chargeback_fee_won:dp_1"][: 1 + (fee > 0)]
    net: dict = {}
    for j in opened + won:
        assert sum(line.amount for line in j.lines) == 0
        for line in j.lines:
            net[line.account] = net.get(line.account, 0) + line.amount
    assert set(net.values()) == {0}
    taken = sum(line.amount for j in opened for line in j.lines if line.account.code == "merchant_pending")
    assert taken == amount + fee  # debited from the merchant


@given(gross=st.integers(1, 10**9), fee=st.integers(0, 10**6),
       parts=st.lists(st.integers(1, 10**9), min_size=2, max_size=8), data=st.data())
def test_escrow_refund_keeps_its_share_and_the_fee_adds_up_in_any_settlement_order(gross, fee, parts, data):
    """A booking's refund out of escrow (the first part) returns floor(fee·R/gross), what its
    escrow keeps for it, wherever it settles among the merchant's refunds out of pending; the
    shares are never negative and add up to the whole fee when everything is refunded."""
    fee = min(fee, gross)
    total = sum(parts)
    amounts = [gross * p // total for p in parts]
    amounts[-1] += gross - sum(amounts)
    amounts = [a for a in amounts if a > 0]
    escrow_refund, merchant_refunds = amounts[0], amounts[1:]
    at = data.draw(st.integers(0, len(merchant_refunds)), label="escrow refund settles after this many")
    refunded, returned = 0, 0
    for i, amount in enumerate([*merchant_refunds[:at], None, *merchant_refunds[at:]]):
        if amount is None:  # the escrow refund settles: its fixed share
            share = refund_fee_share(fee=fee, captured=gross, refunded_before=0, refund=escrow_refund)
            amount = escrow_refund
        else:
            share = refund_fee_back(fee=fee, captured=gross, refunded_before=refunded, returned_before=returned,
                                    refund=amount, escrow_refund_ahead=escrow_refund if i < at else 0)
        assert 0 <= share <= fee
        returned += share
        refunded += amount
    assert returned == fee
