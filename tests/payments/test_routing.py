from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from payments.routing import (
    AttemptVerdict,
    ConnectorCapabilities,
    RoutingInput,
    RoutingRule,
    connector_order,
    should_cascade,
)

CARDS = ConnectorCapabilities(method_types=frozenset({"card"}))
CARDS_AND_BANK = ConnectorCapabilities(method_types=frozenset({"card", "bank_redirect", "sepa_debit"}))
CAPS = {"alpha": CARDS, "beta": CARDS_AND_BANK, "gamma": CARDS}


def pay(**kw) -> RoutingInput:
    return RoutingInput(**({"payment_id": "pay_1", "amount": 1000, "currency": "EUR"} | kw))


def test_priority_order_is_the_merchants_order():
    rules = [RoutingRule("alpha", priority=0), RoutingRule("beta", priority=1)]
    assert connector_order(payment=pay(), rules=rules, capabilities=CAPS) == ["alpha", "beta"]


def test_rule_conditions_filter_connectors():
    rules = [
        RoutingRule("alpha", priority=0, currencies=frozenset({"USD"})),
        RoutingRule("gamma", priority=1, max_amount=500),
        RoutingRule("beta", priority=2, brands=frozenset({"visa"}), bin_countries=frozenset({"DE"})),
    ]
    assert connector_order(payment=pay(brand="visa", bin_country="DE"), rules=rules, capabilities=CAPS) == ["beta"]
    assert connector_order(payment=pay(brand="mastercard"), rules=rules, capabilities=CAPS) == []
    assert connector_order(payment=pay(amount=500, currency="USD"), rules=rules, capabilities=CAPS) == [
        "alpha",
        "gamma",
    ]


def test_only_connectors_supporting_the_method_are_offered():
    rules = [RoutingRule("alpha", priority=0), RoutingRule("beta", priority=1)]
    assert connector_order(payment=pay(method_type="sepa_debit"), rules=rules, capabilities=CAPS) == ["beta"]
    alpha_only = [RoutingRule("alpha")]
    assert connector_order(payment=pay(method_type="sepa_debit"), rules=alpha_only, capabilities=CAPS) == []


def test_open_circuit_goes_last_not_away():
    rules = [RoutingRule("alpha", priority=0), RoutingRule("beta", priority=1)]
    order = connector_order(payment=pay(), rules=rules, capabilities=CAPS, open_circuits=frozenset({"alpha"}))
    assert order == ["beta", "alpha"]


def test_max_attempts_caps_the_list_and_connectors_are_not_repeated():
    rules = [RoutingRule(c, priority=i) for i, c in enumerate(["alpha", "beta", "gamma", "alpha"])]
    assert connector_order(payment=pay(), rules=rules, capabilities=CAPS, max_attempts=2) == ["alpha", "beta"]
    assert connector_order(payment=pay(), rules=rules, capabilities=CAPS, max_attempts=5) == ["alpha", "beta", "gamma"]


def test_weights_split_volume_and_each_payment_is_reproducible():
    rules = [RoutingRule("alpha", weight=80), RoutingRule("beta", weight=20)]
    firsts = Counter(
        connector_order(payment=pay(payment_id=f"pay_{i}"), rules=rules, capabilities=CAPS)[0] for i in range(5000)
    )
    assert 0.76 < firsts["alpha"] / 5000 < 0.84
    one = pay(payment_id="pay_fixed")
    assert connector_order(payment=one, rules=rules, capabilities=CAPS) == connector_order(
        payment=one, rules=rules, capabilities=CAPS
    )


def test_zero_weight_rule_is_never_used():
    rules = [RoutingRule("alpha", weight=0), RoutingRule("beta", weight=1)]
    assert connector_order(payment=pay(), rules=rules, capabilities=CAPS) == ["beta"]


@given(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), max_size=6), st.integers(1, 5))
def test_order_never_repeats_and_respects_the_cap(connectors, cap):
    rules = [RoutingRule(c, priority=i % 2, weight=1 + i) for i, c in enumerate(connectors)]
    order = connector_order(payment=pay(), rules=rules, capabilities=CAPS, max_attempts=cap)
    assert len(order) == len(set(order)) <= cap
    assert set(order) <= set(connectors)


def test_only_surely_unprocessed_attempts_cascade():
    assert {v for v in AttemptVerdict if should_cascade(v)} == {
        AttemptVerdict.SOFT_DECLINE,
        AttemptVerdict.UNAVAILABLE,
    }
