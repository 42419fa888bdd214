"""The adapters' settlement parsers on files that are not what the PSP sent: beta's amounts
(exponents, values no bigint of minor units holds) and a beta file cut short."""

from __future__ import annotations

import pytest

from psp_adapters.alpha import settlement as alpha
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


# --- one record per line: a malformed line is its own row error (review 14a) ---
ALPHA_HEADER = ",".join(alpha.COLUMNS)


def alpha_row(ref="att_1", batch="PB-1") -> str:
    return ",".join(["capture", "2026-11-23", batch, f"auth_{ref}", ref, f"op_{ref}", "", "EUR", "1000", "39", "961"])


def alpha_file(*rows: str, end: str = "\n") -> bytes:
    return end.join([ALPHA_HEADER, *rows, "end_of_report,2026-11-23" + "," * 9]).encode() + end.encode()


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr-only"])
def test_both_parsers_read_lf_crlf_and_cr_only_line_ends(end):
    a = alpha.read(alpha_file(alpha_row("att_1"), alpha_row("att_2"), end=end))
    assert [(r.reference, r.line_number) for r in a.rows] == [("att_1", 2), ("att_2", 3)] and not a.errors
    b = beta.read(beta_file(row(ref="att_1"), row(ref="att_2"), end=end).replace(b"\r\n", end.encode()))
    assert [(r.reference, r.line_number) for r in b.rows] == [("att_1", 5), ("att_2", 6)] and not b.errors


@pytest.mark.parametrize("bad", ['"PB-1', '"PB"x-1', "PB\r-1"], ids=["unclosed-quote", "bad-quoting", "stray-cr"])
def test_a_malformed_line_is_its_own_row_error_and_the_lines_after_it_are_read(bad):
    """A stray quote never closed used to swallow every following line into its field (beta: one
    row error at the last line, the rows after it dropped); a stray CR raised a bare `_csv.Error`
    (alpha: the admin upload a 500) or split the line in two, shifting the numbers after it (beta)."""
    a = alpha.read(alpha_file(alpha_row("att_1"), alpha_row("att_2", batch=bad), alpha_row("att_3")))
    assert [(r.reference, r.line_number) for r in a.rows] == [("att_1", 2), ("att_3", 4)]
    assert [e.line_number for e in a.errors] == [3] and bad not in a.errors[0].message
    b = beta.read(beta_file(row(ref="att_1"), row(ref="att_2").replace("BATCH-1", bad), row(ref="att_3")))
    assert [(r.reference, r.line_number) for r in b.rows] == [("att_1", 5), ("att_3", 7)]
    assert [e.line_number for e in b.errors] == [6]


def test_a_quoted_field_still_reads():
    a = alpha.read(alpha_file(alpha_row("att_1", batch='"PB,1"')))
    assert [r.payout_batch_id for r in a.rows] == ["PB,1"] and not a.errors
    b = beta.read(beta_file(row(ref="att_1").replace("BATCH-1", '"BATCH;1"')))
    assert [r.payout_batch_id for r in b.rows] == ["BATCH;1"] and not b.errors
