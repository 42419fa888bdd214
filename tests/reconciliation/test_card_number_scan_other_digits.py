"""The fast byte scan that decides whether a settlement report's text cells are masked
(`data_has_card_number`) finds what `has_card_number` calls a card number, in any script's digits
(found by session 14's review, 14e): it looked only for 13 ASCII digits in a row, so a card number
typed in full-width digits in beta's "Batch Number" cell was stored in clear in every line's
`payout_batch_id`. A chunk or line with a non-ASCII byte is now checked by `has_card_number` itself.
Real sandbox payments over HTTP, beta's own report, imported on PostgreSQL."""

from __future__ import annotations

import pytest

from payera.core.masking import has_card_number
from reconciliation.models import ReconciliationRun, StatementLine
from reconciliation.services import reconcile_import
from tests.backoffice.leaks import leaks
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)

# 4111 1111 1111 1111 in full-width digits (as a spreadsheet with an East Asian input method
# types them): `has_card_number` and `mask_pans` treat it as the card number it is
WIDE_PAN = "4111111111111111".translate(str.maketrans("0123456789", "０１２３４５６７８９"))


def test_a_card_number_in_non_ascii_digits_in_a_text_cell_is_masked_like_any_other(a_day_of_payments):
    """`data_has_card_number` (payera/core/masking.py) promises to find card numbers in a file's
    bytes "exactly as `has_card_number` finds them in its text", and `_read`
    (reconciliation/services/reconcile.py) masks a row's text cells only when it does.

    What is wrong: its pre-filter `_may_hold` looks for 13 ASCII digits in a row (bytes
    translated 0-9 -> 0), while `has_card_number` matches any Unicode decimal digit (`\\d`,
    `str.isdigit`, `int`). A card number in full-width digits in beta's "Batch Number" cell is a
    card number to `has_card_number` and `mask_pans` (which mask it everywhere else: admin, logs),
    but the scan says the file holds none: `_read` returns the report untouched and the number is
    stored in clear in every StatementLine's payout_batch_id (and the settlement journal's memo and
    metadata, append-only). Expected: the cell is stored masked (BIN and last 4), as an ASCII card
    number is, and `summary["card_numbers_masked"]` counts the rows."""
    assert has_card_number(f"PB {WIDE_PAN}")
    lines = report("beta").decode().split("\r\n")
    header_at = next(i for i, line in enumerate(lines) if line.startswith("Batch Number;"))
    header = lines[header_at].split(";")
    records = [i for i in range(header_at + 1, len(lines)) if lines[i]]
    for i in records:
        cols = lines[i].split(";")
        cols[header.index("Batch Number")] = f"PB {WIDE_PAN}"
        lines[i] = ";".join(cols)
    result = reconcile_import(psp="beta", raw="\r\n".join(lines).encode())
    run = ReconciliationRun.objects.get(pk=result.run_id)
    stored = " ".join(StatementLine.objects.filter(run=run).values_list("payout_batch_id", flat=True))
    assert leaks(stored) == [], (stored, run.summary.get("card_numbers_masked"))
