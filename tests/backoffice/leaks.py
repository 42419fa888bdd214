"""What must never appear on a back-office page: card numbers, IBANs and secrets, by shape."""

from __future__ import annotations

import re

# 13-19 digits in one run, or in groups of four split by one space or dash (as typed on a card).
_PAN_RUN = re.compile(r"(?<![\d.])\d{13,19}(?![\d.])")
_PAN_GROUPED = re.compile(r"(?<![\d-])\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}(?![\d-])")

SECRET_SHAPES = {
    # API keys: the visible prefix ("sk_test_" + 8) may show, the key may not.
    "api key": re.compile(r"\bsk_(?:test|live)_[A-Za-z0-9]{9,}"),
    "webhook secret": re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}"),
    "vault token": re.compile(r"\b(?:hv[sbr]\.[A-Za-z0-9_-]{20,}|s\.[A-Za-z0-9]{24})\b"),
    # Ciphertexts of the secrets backends (local, memory, Vault Transit).
    "ciphertext": re.compile(r"\b(?:local:[\w./-]+:v\d+:|mem:v\d+:|vault:v\d+:)[A-Za-z0-9+/=_-]{8,}"),
    "password hash": re.compile(r"\b(?:pbkdf2_sha256|argon2|bcrypt_sha256|scrypt|md5)\$[^\s\"<]{8,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_numbers(text: str) -> list[str]:
    found = [m.group(0) for m in _PAN_RUN.finditer(text)]
    found += [re.sub(r"[ -]", "", m.group(0)) for m in _PAN_GROUPED.finditer(text)]
    return [number for number in found if 13 <= len(number) <= 19 and luhn_valid(number)]


# An IBAN as stored (compact) or as printed (groups of four split by spaces), either case.
_IBAN_SHAPE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")


def ibans(text: str) -> list[str]:
    """Every full IBAN in `text`: a known country, its length and structure, a valid checksum."""
    from schwifty import IBAN

    found = []
    for match in _IBAN_SHAPE.finditer(text):
        compact = match.group(0).replace(" ", "").upper()
        for end in range(len(compact), 14, -1):  # the shape may have run into the next word
            try:
                IBAN(compact[:end])
            except ValueError:
                continue
            found.append(compact[:end])
            break
    return found


def leaks(text: str, *, known_secrets: tuple[str, ...] = ()) -> list[str]:
    """Every card number, IBAN or secret-shaped string in `text`, plus any of `known_secrets` verbatim."""
    problems = [f"card number {number}" for number in card_numbers(text)]
    problems += [f"IBAN {iban[:2]}...{iban[-4:]}" for iban in ibans(text)]
    problems += [f"{name} {m.group(0)[:24]}..." for name, shape in SECRET_SHAPES.items() for m in shape.finditer(text)]
    problems += [f"known secret {secret[:12]}..." for secret in known_secrets if secret and secret in text]
    return problems
