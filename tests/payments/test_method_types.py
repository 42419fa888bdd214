"""Payment method types declare what they need (payments/method_types.py): fields, validation,
redirect, asynchronous, refundable, recurring, currencies, mandate, masked display. Pure: no DB."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payera.core.errors import InvalidRequestError
from payments.method_types import METHOD_TYPES, iban_mask, method_spec, method_validate
from payments.routing import ConnectorCapabilities, RoutingInput, RoutingRule, connector_order
from psp_adapters.beta.adapter import BetaAdapter
from psp_adapters.port import BankRedirectData, PaymentMethodType, SepaDebitData

TODAY = dt.date(2026, 11, 23)
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_each_type_declares_its_needs():
    flags = {t: (s.fields, s.redirect, s.asynchronous, s.refundable, s.recurring, s.mandate, s.currencies)
             for t, s in METHOD_TYPES.items()}
    assert flags == {
        "card": (("number", "exp_month", "exp_year", "cvc"), False, False, True, True, False, None),
        "bank_redirect": (("bank",), True, True, True, False, False, frozenset({"EUR"})),
        "sepa_debit": (("iban", "account_holder_name"), False, True, True, True, True, frozenset({"EUR"})),
    }
    assert set(METHOD_TYPES) == {t.value for t in PaymentMethodType}  # the port's types, no more


@pytest.mark.parametrize("type_", sorted(METHOD_TYPES))
def test_every_declared_field_is_required_with_its_param(type_):
    spec = method_spec(type_)
    for name in spec.fields:
        section = {f: "x" for f in spec.fields if f != name}
        with pytest.raises(InvalidRequestError) as exc:
            method_validate({"type": type_, type_: section}, today=TODAY)
        assert (exc.value.param, exc.value.code) == (f"payment_method_data[{type_}][{name}]", "parameter_missing")


def test_unknown_type_and_missing_section_are_400():
    with pytest.raises(InvalidRequestError) as exc:
        method_validate({"type": "crypto"}, today=TODAY)
    assert exc.value.param == "payment_method_data[type]"
    with pytest.raises(InvalidRequestError) as exc:
        method_validate({"type": "sepa_debit"}, today=TODAY)
    assert exc.value.param == "payment_method_data[sepa_debit]"


@pytest.mark.parametrize(("iban", "code"), [
    ("DE89370400440532013001", "invalid_iban"),  # check digits
    ("DE8937040044053201300", "invalid_iban"),  # DE is 22 characters
    ("XX89370400440532013000", "invalid_iban"),  # no such country
    ("DE89 3704 0044 0532 0130 0A", "invalid_iban"),  # DE's BBAN is digits only
    ("BR1800360305000010009795493C1", "iban_not_sepa"),
])
def test_bad_ibans_are_refused_without_repeating_them(iban, code):
    with pytest.raises(InvalidRequestError) as exc:
        method_validate({"type": "sepa_debit", "sepa_debit": {"iban": iban, "account_holder_name": "Ada"}},
                        today=TODAY)
    assert exc.value.code == code and exc.value.param == "payment_method_data[sepa_debit][iban]"
    assert iban.replace(" ", "") not in exc.value.message and iban[4:12] not in exc.value.message


def test_an_iban_in_any_layout_is_kept_compact_and_never_in_repr():
    m = method_validate({"type": "sepa_debit", "sepa_debit": {"iban": " nl39 rabo 0300 0652 64 ",
                                                              "account_holder_name": " Ada "}}, today=TODAY)
    assert (m.iban, m.account_holder_name) == ("NL39RABO0300065264", "Ada")
    assert "0300065264" not in repr(m) and "0300065264" not in str(m) and "NL************5264" in repr(m)
    psp = method_spec("sepa_debit").psp_data(SimpleNamespace(account_holder_name="Ada"), m, None)
    assert isinstance(psp, SepaDebitData) and "0300065264" not in repr(psp)


def test_masked_display_is_country_and_last4():
    pm = SimpleNamespace(id="pm_1", iban_country="DE", iban_last4="3000", bank="sandbox_bank")
    assert method_spec("sepa_debit").display(pm) == {"country": "DE", "last4": "3000"}
    assert method_spec("sepa_debit").describe(pm) == "pm_1 sepa_debit DE****3000"
    assert method_spec("bank_redirect").display(pm) == {"bank": "sandbox_bank"}
    assert isinstance(method_spec("bank_redirect").psp_data(pm, None, None), BankRedirectData)
    assert iban_mask("DE89370400440532013000") == "DE****************3000"


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8, max_size=34))
def test_the_mask_never_shows_more_than_country_and_last4(iban):
    masked = iban_mask(iban)
    assert masked[:2] == iban[:2] and masked[-4:] == iban[-4:] and len(masked) == len(iban)
    assert set(masked[2:-4]) <= {"*"}


def test_routing_offers_a_method_only_to_connectors_taking_it_in_that_currency():
    caps = BetaAdapter.capabilities
    beta = ConnectorCapabilities(method_types=frozenset(m.value for m in caps.payment_methods),
                                 currencies=caps.currencies_for("sepa_debit"))
    alpha = ConnectorCapabilities(method_types=frozenset({"card"}))
    rules = [RoutingRule("alpha", priority=0), RoutingRule("beta", priority=1)]
    sepa_eur = RoutingInput(payment_id="pay_1", amount=100, currency="EUR", method_type="sepa_debit")
    sepa_usd = RoutingInput(payment_id="pay_1", amount=100, currency="USD", method_type="sepa_debit")
    assert connector_order(payment=sepa_eur, rules=rules, capabilities={"alpha": alpha, "beta": beta}) == ["beta"]
    assert connector_order(payment=sepa_usd, rules=rules, capabilities={"alpha": alpha, "beta": beta}) == []
    assert connector_order(payment=sepa_eur, rules=rules[:1], capabilities={"alpha": alpha}) == []
    assert caps.supports("card", "USD") and not caps.supports("sepa_debit", "USD")


def test_no_method_type_checks_spread_through_the_code():
    """`if type == "card"` lives in the specs only: other modules ask `method_spec(type)`."""
    pattern = re.compile(r"""(\.type|type_?|kind|method_type)\s*[!=]=\s*(["'](card|sepa_debit|bank_redirect)["']|"""
                         r"""PaymentMethodType\.)""")
    offenders = []
    for folder in ("payments", "payera", "reconciliation"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts or path.name == "method_types.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_mandate_references_are_sepa_safe_unique_and_never_look_like_a_card_number():
    """A hex reference now and then held a Luhn-valid run of 13+ digits: masked as a card number
    in logs, reported by the leak scan (seen in CI: "card number: 754642…6502" in a mandate)."""
    from payments.services.payments import mandate_reference_new
    from tests.plugins.leakscan import find_leaks

    refs = [mandate_reference_new() for _ in range(2000)]
    assert len(set(refs)) == len(refs)
    for ref in refs:
        assert len(ref) <= 35 and re.fullmatch(r"PAYERA-[A-Z]{17}", ref), ref
        assert not re.search(r"\d", ref.removeprefix("PAYERA-")) and find_leaks(ref) == []
