"""Masking of card data and secrets in any text: log lines, error messages, admin output.

What is masked:
- card numbers: 13-19 digits, optionally split by spaces or dashes, that pass the Luhn check,
  become `424242******4242` (BIN and last 4 stay, as PCI DSS allows);
- CVC / CVV / security-code fields, in JSON, form or `key=value` shape: the value becomes `***`;
- `Authorization` header values and bearer tokens;
- Payera secrets by their prefixes (`sk_live_`, `sk_test_`, `whsec_`) and Vault tokens (`hvs.`);
- values of fields whose name says secret (password, secret, token, api_key, pan, iban...).
"""

from __future__ import annotations

import re

_PAN_RE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
_SENSITIVE_KEYS = (
    r"cvc|cvv|cvv2|cvc2|cid|security_code|card_?number|number|pan|password|passwd|secret|"
    r"client_secret|api_key|apikey|token|access_token|refresh_token|authorization|iban|pepper|master_key"
)
# "key": "value" (JSON), 'key': 'value' (repr), key=value (forms, logfmt)
_KV_JSON_RE = re.compile(
    r"""(?P<k>["'](?:""" + _SENSITIVE_KEYS + r""")["']\s*:\s*)(?:"[^"]*"|'[^']*'|[^"',}\]\s]+)""",
    re.IGNORECASE,
)
_KV_FORM_RE = re.compile(r"(?P<k>\b(?:" + _SENSITIVE_KEYS + r")=)(?P<v>[^&\s,;\"'<>]+)", re.IGNORECASE)
_BEARER_RE = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9_.~+/=*-]+", re.IGNORECASE)
_SECRET_TOKEN_RE = re.compile(r"\b(sk_live|sk_test|rk_live|rk_test|whsec)_[A-Za-z0-9]+|\bhv[sbr]\.[A-Za-z0-9._-]+")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _mask_pan(match: re.Match) -> str:
    raw = match.group(0)
    digits = re.sub(r"[ -]", "", raw)
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return raw
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


# An IBAN in free text, compact or in groups of four (either case): masked like a PAN, country
# and last 4 kept, when its ISO 13616 checksum holds (so ids and references are left alone).
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")


def iban_checksum_valid(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _mask_iban(match: re.Match) -> str:
    raw = match.group(0)
    compact = raw.replace(" ", "").upper()
    for end in range(len(compact), 14, -1):  # the shape may have run into the next word
        if iban_checksum_valid(compact[:end]):
            seen, cut = 0, len(raw)
            for i, char in enumerate(raw):  # where the IBAN's `end` characters stop in `raw`
                seen += char != " "
                if seen == end:
                    cut = i + 1
                    break
            iban = compact[:end]
            return iban[:2] + "*" * (len(iban) - 6) + iban[-4:] + raw[cut:]
    return raw


def has_card_number(text: str) -> bool:
    """Whether `text` holds a card number (13-19 digits, spaced or not, passing the Luhn check)."""
    return len(text) >= 13 and any(_mask_pan(m) != m.group(0) for m in _PAN_RE.finditer(text))


def mask_card_numbers(value):
    """`value` (a parsed JSON document) with every card number in its strings, keys included,
    masked as `mask_text` masks them; nothing else changed."""
    if isinstance(value, str):
        return _PAN_RE.sub(_mask_pan, value) if len(value) >= 13 else value
    if isinstance(value, dict):
        return {mask_card_numbers(k): mask_card_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_card_numbers(v) for v in value]
    return value


def mask_text(text: str) -> str:
    if not text:
        return text
    text = _SECRET_TOKEN_RE.sub(lambda m: (m.group(1) + "_***") if m.group(1) else "hvs.***", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} ***", text)
    text = _KV_JSON_RE.sub(lambda m: f'{m.group("k")}"***"', text)
    text = _KV_FORM_RE.sub(lambda m: f"{m.group('k')}***", text)
    text = _PAN_RE.sub(_mask_pan, text)
    text = _IBAN_RE.sub(_mask_iban, text)
    return text


def mask_value(value, *, stringify: bool = False):
    """Mask a structured value (dict/list/str) recursively, keys included in the decision.

    With `stringify`, any other object (a request, an exception) becomes its masked `str()`,
    as a log line would render it anyway.
    """
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and re.fullmatch(_SENSITIVE_KEYS, k, re.IGNORECASE) and v not in (None, ""):
                out[k] = "***"
            else:
                out[k] = mask_value(v, stringify=stringify)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(v, stringify=stringify) for v in value)
    if stringify and not isinstance(value, (int, float, bool, type(None))):
        return mask_text(str(value))
    return value
