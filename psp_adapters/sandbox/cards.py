"""What a test card or IBAN does at each sandbox: the contract's tables, as data.

Behaviours are named with the normalized decline names; each sandbox's wire module turns them
into that PSP's own codes (alpha: ISO 8583-style response codes, beta: refusal reasons).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CardBehaviour:
    decline: str | None = None  # normalized decline the authorization ends in
    three_ds: bool = False  # a challenge first; then `decline` (if any) decides
    slow: bool = False  # hold the answer longer than the adapter's timeout (recorded first)
    dispute_after_capture: bool = False
    off_session_decline: str | None = None  # decline when merchant-initiated (MIT)
    refund_fails: bool = False


APPROVED = CardBehaviour()

_COMMON: dict[str, CardBehaviour] = {
    "4242424242424242": APPROVED,
    "5555555555554444": APPROVED,
    "4000000000000002": CardBehaviour(decline="generic_decline"),
    "4000000000009995": CardBehaviour(decline="insufficient_funds"),
    "4000000000000069": CardBehaviour(decline="expired_card"),
    "4000000000003220": CardBehaviour(three_ds=True),
    "4000008400001629": CardBehaviour(three_ds=True, decline="generic_decline"),
    "4000000000000259": CardBehaviour(dispute_after_capture=True),
    "4000000000000341": CardBehaviour(off_session_decline="insufficient_funds"),
    "4000000000005126": CardBehaviour(refund_fails=True),
}

CARDS: dict[str, dict[str, CardBehaviour]] = {
    "alpha": {
        **_COMMON,
        "4000000000000119": CardBehaviour(decline="processing_error"),
        "4000000000007726": CardBehaviour(slow=True),
    },
    "beta": {
        **_COMMON,
        "4000000000000119": APPROVED,
        "4000000000007726": APPROVED,
    },
}


@dataclass(frozen=True)
class IbanBehaviour:
    decline: str | None = None
    returned: bool = False  # succeeds, then the bank returns the debit (dispute `debit_returned`)


IBANS: dict[str, IbanBehaviour] = {
    "DE89370400440532013000": IbanBehaviour(),
    "AT611904300234573201": IbanBehaviour(decline="insufficient_funds"),
    "NL39RABO0300065264": IbanBehaviour(returned=True),
}


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    if not (15 <= len(s) <= 34) or not s[:2].isalpha() or not s[2:4].isdigit() or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def card_behaviour(psp: str, number: str) -> CardBehaviour:
    """Unknown cards that pass Luhn are approved; a bad number declines `incorrect_number`."""
    if not luhn_ok(number):
        return CardBehaviour(decline="incorrect_number")
    return CARDS[psp].get(number, APPROVED)


def iban_behaviour(iban: str) -> IbanBehaviour:
    return IBANS.get(iban.replace(" ", "").upper(), IbanBehaviour())
