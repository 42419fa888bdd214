"""Secret-leak scan of all log output of the test session (issue 10, "secrets never in logs").

Every line any logging handler writes during the session — whichever logger, whichever handler,
added when — is scanned *as it is output*, i.e. after our masking (`payera.core.logging`). This
is done by wrapping `logging.Handler.format` once per process, so a handler added later (or one a
test or library adds without the masking filter) is scanned as well. pytest's own capture
handlers (caplog, the report sections) show raw records to the developer and are not output of
the application: they are skipped.

A leak fails the test in whose setup, call or teardown it was logged (so the report names the
culprit). A leak outside any test (collection, session fixtures' teardown) fails the session.
Under xdist each worker scans its own output; a worker's session-level leaks are sent to the
controller through `workeroutput` and fail the run there.

What counts as a leak: a card number (13-19 digits, spaces or dashes allowed, with a scheme's prefix
and length and a valid Luhn check: `payera.core.masking.is_card_number`, as masked), one of
the sandbox test PANs in any separator shape, a CVC value next to a cvc/cvv key, an `sk_test_` /
`sk_live_` (or `rk_`) key, a `whsec_` secret, a Vault/OpenBao token (`hvs.` / `hvb.` / `hvr.`),
an IBAN (the sandbox test IBANs in any separator shape or case, or any string shaped like an
IBAN whose country, length and checksum are valid). Masked forms (`424242******4242`,
`DE**************3000`, `sk_test_***`, `"cvc": "***"`) are not leaks.
"""

from __future__ import annotations

import logging
import re

import pytest

from payera.core.masking import is_card_number

# The fraction of a decimal number (a float such as Celery's task runtime 0.02153048900072463)
# is no card number: digits right after a "." (or before ".<digit>") are skipped.
_PAN_RE = re.compile(r"(?<![\d.])(?:\d[ -]?){12,18}\d(?!\d|\.\d)")
_TEST_PANS = (
    "4242424242424242",
    "5555555555554444",
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000119",
    "4000000000003220",
    "4000008400001629",
    "4000000000007726",
    "4000000000000259",
    "4000000000000341",
    "4000000000005126",
)
_TEST_PAN_RE = re.compile("|".join(r"[ ./_-]?".join(pan) for pan in _TEST_PANS))
# The contract's test IBANs (and the payout bank account of the reconciliation tests), in any
# separator shape and case; any other IBAN is caught by its shape and a valid checksum.
_TEST_IBANS = (
    "DE89370400440532013000",
    "AT611904300234573201",
    "NL39RABO0300065264",
)
_TEST_IBAN_RE = re.compile("|".join(r"[ ./_-]?".join(iban) for iban in _TEST_IBANS), re.IGNORECASE)
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")


def iban_valid(candidate: str) -> bool:
    """A real IBAN: a known country, its length and structure, a valid checksum (schwifty)."""
    from schwifty import IBAN

    for end in range(len(candidate), 14, -1):  # the shape may have run into the next word
        try:
            IBAN(candidate[:end])
        except ValueError:
            continue
        return True
    return False
_PATTERNS = {
    "cvc": re.compile(
        r"""(?i)\b(?:cvc|cvv|cvc2|cvv2|security_code|card_code)\b["']?\s*[:=]\s*["']?\d{3,4}(?!\d)"""
    ),
    "api key": re.compile(r"\b[sr]k_(?:test|live)_[A-Za-z0-9]{6,}"),
    "webhook secret": re.compile(r"\bwhsec_[A-Za-z0-9+/=]{6,}"),
    "vault token": re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{10,}"),
}


def find_leaks(text: str) -> list[str]:
    """What in `text` is a secret in clear: a list of `kind: excerpt` (excerpt itself masked)."""
    found: list[str] = []
    for match in _PAN_RE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group(0))
        if is_card_number(digits):
            found.append(f"card number: {digits[:6]}…{digits[-4:]}")
    for match in _TEST_PAN_RE.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        entry = f"card number: {digits[:6]}…{digits[-4:]}"
        if entry not in found:
            found.append(entry)
    for match in [*_TEST_IBAN_RE.finditer(text), *_IBAN_RE.finditer(text)]:
        compact = re.sub(r"[^A-Za-z0-9]", "", match.group(0)).upper()
        entry = f"IBAN: {compact[:2]}…{compact[-4:]}"
        if entry not in found and (compact in _TEST_IBANS or iban_valid(compact)):
            found.append(entry)
    for kind, pattern in _PATTERNS.items():
        for match in pattern.finditer(text):
            found.append(f"{kind}: {match.group(0)[:12]}…")
    return found


class _Scanner:
    def __init__(self) -> None:
        self.pending: list[str] = []  # leaks not yet attributed to a test phase
        self.lines = 0
        self._original = logging.Handler.format

    def install(self) -> None:
        scanner, original = self, self._original

        def format(handler: logging.Handler, record: logging.LogRecord) -> str:
            text = original(handler, record)
            if not type(handler).__module__.startswith("_pytest"):
                scanner.lines += 1
                for leak in find_leaks(text):
                    scanner.pending.append(f"{leak} (logger {record.name!r}, handler {type(handler).__name__})")
            return text

        logging.Handler.format = format  # type: ignore[method-assign]

    def uninstall(self) -> None:
        logging.Handler.format = self._original  # type: ignore[method-assign]

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        return taken


_scanner = _Scanner()


def pytest_configure(config):
    if getattr(config, "_leakscan", None) is None:
        config._leakscan = _scanner
        _scanner.install()


def pytest_unconfigure(config):
    if getattr(config, "_leakscan", None) is _scanner:
        _scanner.uninstall()


def pytest_collection_finish(session):
    # Logged while importing test modules: no test to blame, the session fails.
    session.config._leakscan_session_leaks = _scanner.take()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.outcome == "skipped" or not _scanner.pending:
        return  # a skipped phase keeps its leaks pending: the session will report them
    leaks = _scanner.take()
    if leaks:
        report.outcome = "failed"
        listed = "\n  ".join(sorted(set(leaks)))
        report.longrepr = f"Secret leaked into the log output during {report.when}:\n  {listed}"


def pytest_sessionfinish(session, exitstatus):
    leaks = [*getattr(session.config, "_leakscan_session_leaks", []), *_scanner.take()]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller decides
        workeroutput["leakscan"] = leaks
        return
    _fail_session(session, [*leaks, *getattr(session.config, "_leakscan_worker_leaks", [])])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # xdist controller: a worker finished
    leaks = getattr(node, "workeroutput", {}).get("leakscan") or []
    if leaks:
        node.config._leakscan_worker_leaks = [*getattr(node.config, "_leakscan_worker_leaks", []), *leaks]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "_leakscan_failed", False):
        terminalreporter.section("secret leak scan", sep="=", red=True)
        for leak in sorted(set(config._leakscan_failed_leaks)):
            terminalreporter.line(f"LEAK outside any test: {leak}", red=True)


def _fail_session(session, leaks: list[str]) -> None:
    if not leaks:
        return
    config = session.config
    config._leakscan_failed = True
    config._leakscan_failed_leaks = [*getattr(config, "_leakscan_failed_leaks", []), *leaks]
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
