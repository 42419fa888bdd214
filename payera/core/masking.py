"""Masking of card data and secrets in any text: log lines, error messages, admin output.

What is masked:
- card numbers (`is_card_number`: a scheme's prefix, a length that scheme issues, the Luhn check),
  compact or split by spaces or dashes, alone or among other digits (`card_number_spans`), become
  `424242******4242` (BIN and last 4 stay, as PCI DSS allows);
- IBANs (a country's length and structure, a valid checksum) become `DE****************3000`;
- CVC / CVV / security-code fields, in JSON, form or `key=value` shape: the value becomes `***`;
- `Authorization` header values and bearer tokens;
- Payera secrets by their prefixes (`sk_live_`, `sk_test_`, `whsec_`) and Vault tokens (`hvs.`);
- values of fields whose name says secret (password, secret, token, api_key, pan, iban...).

Staff free text (reasons, notes, memos) is masked by `mask_account_numbers`: card numbers, IBANs
and the secrets' prefixes only, as the key=value rules would take "ticket number=48213" for a secret.
Every function here returns a fixed point: masking its output again changes nothing.
"""

from __future__ import annotations

import json
import re

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
# up to the last url-safe character: webhook secrets are `whsec_` + token_urlsafe (`-` and `_` too)
_SECRET_TOKEN_RE = re.compile(r"\b(sk_live|sk_test|rk_live|rk_test|whsec)_[A-Za-z0-9_-]+|\bhv[sbr]\.[A-Za-z0-9._-]+")


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


# The schemes' prefixes (IIN ranges, as (low, high) of the same width) and the lengths each issues.
# A Luhn-valid run of digits is a card number only with one of these: 10 % of numeric ids, order
# numbers and references pass the Luhn check, far fewer also start like a card of that length.
_ANY = tuple(range(16, 20))
_SCHEMES: tuple[tuple[tuple[int, int], tuple[int, ...]], ...] = (
    ((4, 4), (13, 16, 19)),  # Visa
    ((51, 55), (16,)),  # Mastercard
    ((2221, 2720), (16,)),  # Mastercard 2-series
    ((34, 34), (15,)),  # American Express
    ((37, 37), (15,)),
    ((6011, 6011), _ANY),  # Discover
    ((644, 649), _ANY),
    ((65, 65), _ANY),
    ((3528, 3589), _ANY),  # JCB
    ((62, 62), _ANY),  # UnionPay
    ((36, 36), tuple(range(14, 20))),  # Diners Club
    ((300, 305), tuple(range(14, 20))),
    ((38, 39), tuple(range(14, 20))),
    ((50, 50), tuple(range(13, 20))),  # Maestro (12 digits exist; 13 is the floor here)
    ((56, 58), tuple(range(13, 20))),
    ((67, 67), tuple(range(13, 20))),
    ((6304, 6304), tuple(range(13, 20))),  # Maestro UK
    ((2200, 2204), _ANY),  # Mir
    ((60, 60), _ANY),  # RuPay (Discover's 6011 above too)
    ((508, 508), _ANY),  # RuPay
    ((81, 82), _ANY),  # UnionPay 81, RuPay 82
    ((9792, 9792), (16,)),  # Troy
)


def is_card_number(digits: str) -> bool:
    """Whether `digits` (digits only) is a card number: 13-19 digits, a scheme's prefix with a length
    that scheme issues, and the Luhn check."""
    if not (13 <= len(digits) <= 19 and digits.isdigit()):
        return False
    for (low, high), lengths in _SCHEMES:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return luhn_valid(digits)
    return False


# A run of digits, groups split by one space or dash ("4111 1111 1111 1111 123", "1 4111...").
_DIGIT_RUN_RE = re.compile(r"(?<!\d)\d+(?:[ -]\d+)*(?!\d)")
_DIGIT_GROUP_RE = re.compile(r"\d+")


def card_number_spans(run: str) -> list[tuple[int, int]]:
    """The (start, end) of each card number in `run` (a run of digit groups): the whole run when it
    is one, else, from the left, the longest window of whole groups (13-19 digits) that is one."""
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP_RE.finditer(run)]
    if is_card_number("".join(run[s:e] for s, e in groups)):
        return [(0, len(run))]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        digits, last = "", None
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            if is_card_number(digits):
                last = j
        if last is None:
            i += 1
            continue
        spans.append((groups[i][0], groups[last][1]))
        i = last + 1
    return spans


def _masked_pan(digits: str) -> str:
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _mask_run(match: re.Match) -> str:
    run = match.group(0)
    if len(run) < 13:
        return run
    out, at = [], 0
    for start, end in card_number_spans(run):
        out += [run[at:start], _masked_pan(re.sub(r"[ -]", "", run[start:end]))]
        at = end
    return "".join(out) + run[at:] if out else run


def _fixed_point(mask, text: str) -> str:
    """`mask` applied until it changes nothing (a mask's kept digits may join a neighbour's into a
    new number); each change masks digits away, so this ends."""
    for _ in range(50):
        masked = mask(text)
        if masked == text:
            return text
        text = masked
    return text


def _mask_pans_once(text: str) -> str:
    return _DIGIT_RUN_RE.sub(_mask_run, text)


def mask_pans(text: str) -> str:
    """`text` with its card numbers masked (BIN and last 4 kept); nothing else changed."""
    return _fixed_point(_mask_pans_once, text) if len(text) >= 13 else text


# An IBAN in free text, compact or in groups of four (either case): where one may start; it is
# masked like a PAN, country and last 4 kept, when it has its country's length and structure and
# a valid ISO 13616 checksum, ending at the end of a word (so ids, references and the words after
# it are left alone).
_IBAN_START_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?=[ ]?[A-Za-z0-9])")
_IBAN_PART_RE = re.compile(r"[ ]?[A-Za-z0-9]+")


def iban_checksum_valid(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_valid(compact: str) -> bool:
    from schwifty import IBAN

    if not iban_checksum_valid(compact):
        return False
    try:
        IBAN(compact)  # the country's length and structure
    except ValueError:
        return False
    return True


def _mask_ibans_once(text: str) -> str:
    out, at = [], 0
    for start_match in _IBAN_START_RE.finditer(text):
        start = start_match.start()
        if start < at:
            continue
        pos, compact, found = start_match.end(), start_match.group(0).upper(), None
        while len(compact) < 34:  # word by word: an IBAN ends where a word (or group) ends
            part = _IBAN_PART_RE.match(text, pos)
            if part is None:
                break
            compact += part.group(0).lstrip(" ").upper()
            pos = part.end()
            if _iban_valid(compact):
                found = (compact, pos)
        if found:
            iban, end = found
            out += [text[at:start], iban[:2] + "*" * (len(iban) - 6) + iban[-4:]]
            at = end
    return "".join(out) + text[at:] if out else text


def mask_ibans(text: str) -> str:
    return _fixed_point(_mask_ibans_once, text) if len(text) >= 15 else text


def has_card_number(text: str) -> bool:
    """Whether `text` holds a card number (`is_card_number`), compact or spaced, alone or among other digits."""
    return len(text) >= 13 and any(card_number_spans(m.group(0)) for m in _DIGIT_RUN_RE.finditer(text))


_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_THIRTEEN_DIGITS = b"0" * 13


def _may_hold(data: bytes) -> bool:
    # 13 ASCII digits in a row once every space and dash is taken out, or any non-ASCII byte (a
    # digit of another script, e.g. full-width "４１１１…", counts for has_card_number's `\d`):
    # a superset of has_card_number's
    return not data.isascii() or data.translate(_DIGITS_AS_ZERO, b" -").find(_THIRTEEN_DIGITS) >= 0


def data_has_card_number(data: bytes, *, chunk: int = 1 << 20) -> bool:
    """Whether a large file's bytes (UTF-8 text: a settlement report) hold a card number, exactly as
    `has_card_number` finds them in its text, at C speed for the usual file without one (about
    0.2-0.5 s for 100 MB): chunks of whole lines (a card number never spans a line end) go through a
    translate-and-find filter (13 digits in a row once spaces and dashes are taken out, or a
    non-ASCII byte); only the lines of a chunk that passes it are decoded and checked by
    `has_card_number`."""
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", min(start + chunk, size))
        end = size if end < 0 else end + 1
        part = data[start:end]
        if _may_hold(part):
            for line in part.split(b"\n"):
                if _may_hold(line) and has_card_number(line.decode("utf-8", "replace")):
                    return True
        start = end
    return False


def mask_card_numbers(value):
    """`value` (a parsed JSON document) with every card number in its strings, keys included,
    masked as `mask_text` masks them; nothing else changed."""
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, dict):
        return {mask_card_numbers(k): mask_card_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_card_numbers(v) for v in value]
    return value


def _mask_secret_tokens(text: str) -> str:
    return _SECRET_TOKEN_RE.sub(lambda m: (m.group(1) + "_***") if m.group(1) else "hvs.***", text)


def mask_account_numbers(text: str) -> str:
    """Staff free text (a reason, a note, a memo) with card numbers, IBANs and Payera's secret
    tokens (API keys, webhook secrets, Vault tokens) masked, nothing else: the key=value rules of
    `mask_text` are for machine text ("ticket number=48213" stays)."""
    if not text:
        return text
    return _fixed_point(lambda t: mask_ibans(mask_pans(_mask_secret_tokens(t))), text)


def _mask_text_once(text: str) -> str:
    text = _mask_secret_tokens(text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} ***", text)
    text = _KV_JSON_RE.sub(lambda m: f'{m.group("k")}"***"', text)
    text = _KV_FORM_RE.sub(lambda m: f"{m.group('k')}***", text)
    return mask_ibans(mask_pans(text))


def mask_text(text: str) -> str:
    if not text:
        return text
    return _fixed_point(_mask_text_once, text)


def mask_json_text(text: str) -> str:
    """A body that may be JSON (a PSP webhook's): the parsed document masked (`mask_value`) and
    serialized again, so it stays valid JSON; as it was when nothing in it is masked; any other
    text masked as text."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return mask_text(text)
    masked = mask_value(parsed)
    return text if masked == parsed else json.dumps(masked, ensure_ascii=False)


def mask_value(value, *, stringify: bool = False):
    """Mask a structured value (dict/list/str) recursively, keys included in the decision.

    An integer that is a card number becomes its masked string. With `stringify`, any other object
    (a request, an exception) becomes its masked `str()`, as a log line would render it anyway.
    """
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and re.fullmatch(_SENSITIVE_KEYS, k, re.IGNORECASE) and v not in (None, ""):
                out[k] = "***"
            else:
                out[mask_text(k) if isinstance(k, str) else k] = mask_value(v, stringify=stringify)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(v, stringify=stringify) for v in value)
    if isinstance(value, int) and not isinstance(value, bool) and is_card_number(str(value)):
        return _masked_pan(str(value))
    if stringify and not isinstance(value, (int, float, bool, type(None))):
        return mask_text(str(value))
    return value
