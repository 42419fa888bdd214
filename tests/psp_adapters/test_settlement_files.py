"""The adapters' settlement parsers on files that are not what the PSP sent: beta's amounts
(exponents, values no bigint of minor units holds) and a beta file cut short."""

from __future__ import annotations

import pytest

from psp_adapters.beta import settlement as beta
from psp_adapters.errors import SettlementReportError

HEADER = ";".join(beta.COLUMNS)


def row(gross="10.00", fee="0.19", net="9.81", ref="att_1") -> str:
    return ";".join(["BATCH-1", "23.11.2026 10:00:00", "Settled", "BP1", "BM1", ref, "cap_1", "EUR", gross, fee, net])


def beta_file(*rows: str, end: str = "\r\n") -> bytes:
    return ("\r\n".join([beta.TITLE, "Report Date;23.11.2026", "", HEADER, *rows]) + end).encode()


@pytest.mark.parametrize(
    ("gross", "message"),
    [
        ("99999999999999999999.00", "Gross is out of range: '99999999999999999999.00'"),
        ("10000000000000000.00", "Gross is out of range: '10000000000000000.00'"),  # 10^18 minor units
        ("1E+2", "Gross is not an amount: '1E+2'"),
        ("1e2", "Gross is not an amount: '1e2'"),
        ("Infinity", "Gross is not an amount: 'Infinity'"),
        ("1,00", "Gross is not an amount: '1,00'"),
        ("10.001", "'10.001' has more decimals than EUR allows"),
    ],
)
def test_a_beta_amount_that_is_not_a_plain_decimal_in_range_is_a_row_error(gross, message):
    report = beta.read(beta_file(row(), row(gross=gross, ref="att_2")))
    assert [r.reference for r in report.rows] == ["att_1"]
    assert [(e.line_number, e.message) for e in report.errors] == [(6, message)]


def test_the_largest_beta_amount_is_read():
    [r] = beta.read(beta_file(row(gross="9999999999999999.99", fee="0", net=" -9999999999999999.99 "))).rows
    assert (r.gross, r.net) == (10**18 - 1, -(10**18 - 1))


def test_a_beta_file_cut_in_the_middle_of_its_last_row_is_refused_whole():
    cut = beta_file(row(), row(ref="att_2"), end="")[:-12]
    with pytest.raises(SettlementReportError, match="cut short"):
        beta.read(cut)
    # a last line without its line end but whole (a hand-edited file) is read
    assert len(beta.read(beta_file(row(), row(ref="att_2"), end="")).rows) == 2
