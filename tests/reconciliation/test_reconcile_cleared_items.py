"""Issue #8 limits 1 and 3, end to end on real sandbox payments and their real alpha report (changed
where a test needs a discrepancy):

- a report line (a later import) or a resolution (a line settled as reported) settling an item
  finance had already cleared (written off, adjusted) credits the PSP receivable only what is still
  owed of it and gives the rest back to the account the clearing debited (a recovery): the
  receivable never goes negative, the check stays `ok`, the aging true, `ledger_verify` clean;
- a currency mismatch settled as reported books each currency apart (the line's money in its
  currency, Payera's item off the receivable of its own), every journal balanced per currency."""

from __future__ import annotations

import pytest
from django.db import connection

from ledger.models import Entry, Journal
from ledger.types import Accounts
from reconciliation.errors import DiscrepancyMoneyError
from reconciliation.models import Discrepancy
from reconciliation.selectors import receivable_aging
from reconciliation.services import discrepancy_resolve, discrepancy_settle_as_reported, discrepancy_write_off
from tests.backoffice.staff import otp_force_login
from tests.reconciliation.helpers import asset
from tests.reconciliation.test_reconcile_resolutions import GROSS, NET, act, alpha_day, finance, ties_out

pytestmark = pytest.mark.django_db(transaction=True)

CURRENCY = 7  # alpha's report column


def receivable(currency: str = "EUR") -> int:
    return asset(Accounts.psp_receivable("alpha", currency))


def differences(currency: str = "EUR") -> int:
    return asset(Accounts.reconciliation_differences(currency))


def balanced_per_currency(reference: str) -> dict[str, int]:
    sums: dict[str, int] = {}
    for currency, amount in Entry.objects.filter(journal__reference=reference).values_list(
        "account__currency", "amount"
    ):
        sums[currency] = sums.get(currency, 0) + amount
    return sums


def test_a_later_report_line_settling_a_written_off_capture_recovers_the_loss(a_day_of_payments):
    run = alpha_day(keep=(0, 2, 3))  # the 2,500 capture is missing at the PSP
    d = run.discrepancies.get(kind="missing_at_psp")
    discrepancy_write_off(discrepancy_id=d.pk, user=finance(), reason="the PSP will never pay it")
    assert (receivable(), differences()) == (0, 2_500)
    bank = asset(Accounts.bank_cash("EUR"))
    # the PSP pays it after all, in a later report: the line matches the capture
    later = alpha_day(keep=(1,))
    line = later.lines.get()
    assert line.outcome == "matched" and later.summary["recovered"] == {"EUR": 2_500}
    assert receivable() == 0  # credited once (it was -2,500: the capture taken off twice)
    assert differences() == 0  # the loss recovered
    assert asset(Accounts.bank_cash("EUR")) - bank == line.net
    d.refresh_from_db()
    assert (d.status, d.receivable_cleared, d.receivable_recovered) == ("written_off", 2_500, 2_500)
    journal = Journal.objects.get(reference=line.journal_reference)
    assert journal.metadata["recovered"] == {"reconciliation_differences:EUR": 2_500}
    ties_out()
    assert receivable_aging(psp="alpha") == []
    # the same file again changes nothing; a resolution has nothing left to take off
    journals = Journal.objects.count()
    alpha_day(keep=(1,))
    assert Journal.objects.count() == journals and differences() == 0
    ties_out()


def test_a_later_line_after_a_partial_adjustment_gives_the_fee_expense_back(a_day_of_payments):
    run = alpha_day(keep=(0, 2, 3))
    d = run.discrepancies.get(kind="missing_at_psp")
    fees = asset(Accounts.psp_fee_expense("EUR"))
    discrepancy_resolve(discrepancy_id=d.pk, user=finance(), reason="PSP keeps 10.00", adjustment=1_000,
                        currency="EUR")  # fmt: skip
    assert (receivable(), asset(Accounts.psp_fee_expense("EUR")) - fees) == (1_500, 1_000)
    later = alpha_day(keep=(1,))
    line = later.lines.get()
    assert receivable() == 0  # credited the 1,500 still owed, not the gross 2,500
    assert asset(Accounts.psp_fee_expense("EUR")) - fees == line.gross - line.net  # the adjustment given back
    assert Discrepancy.objects.get(pk=d.pk).receivable_recovered == 1_000
    ties_out()
    assert receivable_aging(psp="alpha") == []


def test_an_amount_mismatch_settled_as_reported_after_a_write_off_gives_the_loss_back(client, a_day_of_payments):
    first = alpha_day(keep=(0, 1, 3))  # the 730 capture is missing at the PSP: written off
    gone = first.discrepancies.get(kind="missing_at_psp")
    discrepancy_write_off(discrepancy_id=gone.pk, user=finance(), reason="never paid")
    assert differences() == 730

    def more(i, cols):  # then the PSP does settle it, 830 for our 730 (fee 35, net 795)
        cols[GROSS], cols[NET] = str(int(cols[GROSS]) + 100), str(int(cols[NET]) + 100)

    d = alpha_day(more, keep=(2,)).discrepancies.get()
    assert (d.kind, d.psp_amount, d.payera_amount) == ("amount_mismatch", 830, 730)
    bank = asset(Accounts.bank_cash("EUR"))
    otp_force_login(client, finance("fin2"))
    act(client, "settle_as_reported", [d.pk])
    d.refresh_from_db()
    assert d.status == "resolved", d.reason
    assert asset(Accounts.bank_cash("EUR")) - bank == 795
    assert receivable() == 0  # nothing was owed any more: not credited again
    assert differences() == -100  # the 730 loss recovered, the 1.00 paid more a gain
    gone.refresh_from_db()
    assert (gone.receivable_recovered, d.receivable_cleared, d.cleared_account) == (
        730,
        730,
        "reconciliation_differences",
    )
    ties_out()
    assert receivable_aging(psp="alpha") == []


def test_a_currency_mismatch_is_settled_as_reported_each_currency_apart(client, a_day_of_payments):
    def dollars(i, cols):  # the PSP settled our 730 EUR capture as 730 USD (fee 35, net 695)
        if i == 2:
            cols[CURRENCY] = "USD"

    run = alpha_day(dollars, keep=(0, 2, 3))  # (the 2,500 capture is left for later: missing at the PSP)
    d = run.discrepancies.get(kind="currency_mismatch")
    assert (d.currency, d.line.expected_currency) == ("USD", "EUR")
    assert receivable() == 730 + 2_500
    otp_force_login(client, finance())
    act(client, "settle_as_reported", [d.pk])
    d.refresh_from_db()
    assert d.status == "resolved" and d.adjustment_reference == f"recon_settle:{d.pk}", d.reason
    # the dollars that arrived: bank and fee in USD against reconciliation differences in USD
    assert (asset(Accounts.bank_cash("USD")), asset(Accounts.psp_fee_expense("USD"))) == (695, 35)
    assert differences("USD") == -730
    # the euro capture leaves the EUR receivable against reconciliation differences in EUR
    assert (receivable("EUR"), differences("EUR")) == (2_500, 730)
    assert receivable("USD") == 0
    assert (d.receivable_cleared, d.cleared_currency) == (730, "EUR")
    assert balanced_per_currency(d.adjustment_reference) == {"EUR": 0, "USD": 0}
    ties_out()
    assert [a["amount"] for a in receivable_aging(psp="alpha")] == [2_500]

    # a line whose net is not gross - fee is still refused, as for the other kinds
    def off(i, cols):
        if i == 1:
            cols[CURRENCY], cols[NET] = "USD", str(int(cols[NET]) - 1)

    bad = alpha_day(off, keep=(1,)).discrepancies.get(kind="currency_mismatch")
    with pytest.raises(DiscrepancyMoneyError, match="does not add up"):
        discrepancy_settle_as_reported(discrepancy_id=bad.pk, user=finance("fin2"), reason="a refusal")


def test_the_cleared_items_lookup_reads_the_partial_index_only(a_day_of_payments):
    """The import's lookup starts from the discrepancies that cleared something (a partial index):
    with none (the usual import) it reads no line at all."""
    from reconciliation.services.discrepancies import lines_recover, recover_sql

    run = alpha_day()
    assert lines_recover(psp="alpha", where="l.run_id = %s", params=[run.id]) == {}
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # (a test database's tables are tiny: plans as in a large one)
        cursor.execute(f"EXPLAIN {recover_sql('l.run_id = %s')}", [run.id, "alpha"])
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "recon_dsc_cleared_idx" in plan, plan
    # each cleared item's lines by an index (the object's, or the run's in a tiny test table), never a scan
    assert "Seq Scan" not in plan, plan
