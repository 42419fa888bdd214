"""Two gaps in session 14's reconciliation fixes, found by its review 14e: the nightly pull's
catch-up window started at the PSP's own first finished report, so a day it missed before its first
success was never pulled again (now: from the first report of any PSP); and a card number that a
shifted column puts into an alpha amount cell (integers of up to 18 digits) parsed as an amount and
was stored in clear in the statement line and its discrepancy (now: that row is a row error, its
number quoted masked, and not imported)."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.services import reconcile_import
from reconciliation.services.reconcile import pull_days
from tests.backoffice.leaks import leaks
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)

PAN = "4111111111111111"  # 16 digits: within alpha's 18-digit integer cells


def _run(psp: str, day: dt.date, status: str = "done", n=[0]) -> None:  # noqa: B006 - unique hashes
    n[0] += 1
    ReconciliationRun.objects.create(psp=psp, file_sha256=f"e14{n[0]:061x}", status=status,
                                     period_start=day, period_end=day)  # fmt: skip


def test_a_failed_catch_up_day_older_than_the_psps_first_finished_report_is_pulled_again(settings):
    """docs/reconciliation.md and `reconcile_pull`'s docstring: "a day whose pull could not reach
    the PSP, whose report was refused or whose import failed is pulled again by the next nights".

    What is wrong: `pull_days` (reconciliation/services/reconcile.py) starts the window at the
    PSP's *first finished* report, falling back to the first report of any PSP only while the PSP
    has none. Alpha was unreachable for the nights of y-3 and y-2 (beta reported them); the night
    it is back, the catch-up pulls y-3, y-2 and y-1 oldest first, y-3's import fails (its report
    refused: a download cut short) while y-2 and y-1 import. From the next night on, alpha's first
    finished report is y-2, so y-3 falls before the window's start and is never fetched again:
    its settlement is never posted and, no finished run covering its period, its captures are not
    even "missing at PSP" (the silent loss the catch-up was added for). With no alpha report at
    all the same y-3 would be fetched (from beta's first report): a later success erases an
    earlier miss. Expected: y-3 stays in the days pulled until a finished run covers it."""
    settings.RECONCILIATION_PULL_CATCH_UP_DAYS = 7
    y = dt.date(2026, 12, 20)
    for n in (3, 2, 1, 0):
        _run("beta", y - dt.timedelta(days=n))
    before = pull_days(psp="alpha", yesterday=y - dt.timedelta(days=1))  # the night alpha is back
    assert before[0] == y - dt.timedelta(days=3), before
    _run("alpha", y - dt.timedelta(days=3), status="failed")  # that night: y-3 refused ...
    _run("alpha", y - dt.timedelta(days=2))  # ... y-2 and y-1 imported
    _run("alpha", y - dt.timedelta(days=1))
    days = pull_days(psp="alpha", yesterday=y)  # the next night
    missed = y - dt.timedelta(days=3)
    assert missed in days, f"alpha's failed day {missed} is never pulled again: {days}"


def test_a_card_number_in_an_alpha_amount_cell_is_never_stored_in_clear(a_day_of_payments):
    """No PAN stored anywhere (../shared/ARCHITECTURE.md); review 14a: "card numbers in report
    text cells masked before anything is stored", and tests/reconciliation/test_reconcile_card_numbers.py
    says a card number a shifted column puts into an *amount* is a row error (masked).

    What is wrong: alpha's amounts are integers of minor units up to 18 digits
    (`SETTLEMENT_INTEGER_MAX_LENGTH`, psp_adapters/alpha/settlement.py `_int`), so a 16-digit card
    number that a shifted column puts into `gross` (and `net`) parses as an amount. The file is
    read by the Python parser (`data_has_card_number` found it) but `_read` masks only TEXT_FIELDS:
    the row imports with gross = net = the card number, stored in clear in StatementLine.gross/net
    and in its discrepancy's `psp_amount` (an amount mismatch against the capture's 10000),
    where `card_scan` (PCI DSS data discovery) and every later read find it.
    Expected: a row whose amount cell holds a card number is a row error (quoted masked) and no
    stored line or discrepancy holds the number."""
    lines = report("alpha").decode().splitlines()
    header = lines[0].split(",")
    cols = lines[1].split(",")
    cols[header.index("gross_minor")], cols[header.index("fee_minor")], cols[header.index("net_minor")] = PAN, "0", PAN
    lines[1] = ",".join(cols)
    result = reconcile_import(psp="alpha", raw=("\n".join(lines) + "\n").encode())
    run = ReconciliationRun.objects.get(pk=result.run_id)
    stored = [f"{g} {n}" for g, n in StatementLine.objects.filter(run=run).values_list("gross", "net")]
    stored += [f"{a} {b}" for a, b in Discrepancy.objects.filter(run=run).values_list("psp_amount", "payera_amount")]
    assert leaks(" ".join(stored)) == [], (stored, run.row_errors)
