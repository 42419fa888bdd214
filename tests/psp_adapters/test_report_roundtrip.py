"""Property: whatever a sandbox settles in a day, its report parses back to exactly those rows
(signs, minor units, currencies of every exponent, references; a dispute won that day as its
reversal, with no fee; a refund returned that day by the shopper's bank as its reversal, with no
fee, and a refund returned later still listed on the day it succeeded)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from psp_adapters.alpha import AlphaAdapter
from psp_adapters.beta import BetaAdapter
from psp_adapters.port import SettlementKind
from psp_adapters.sandbox import reports
from psp_adapters.sandbox.core import fee_for
from psp_adapters.sandbox.store import Store, db_path, new_id

DAY = dt.date(2026, 11, 23)
START = dt.datetime.combine(DAY, dt.time(), dt.UTC).timestamp()

entry = st.tuples(
    # won: a dispute opened the day before and won at the entry's time (its reversal is reported then)
    # returned: a refund made the day before and returned at the entry's time (its reversal is
    # reported then); returned_later: a refund made at the entry's time and returned days later
    st.sampled_from(["capture", "refund", "chargeback", "won", "returned", "returned_later"]),
    st.integers(min_value=1, max_value=10**11),
    st.sampled_from(["EUR", "JPY", "KWD", "USD", "CLF", "BHD"]),
    st.floats(min_value=-3600, max_value=86400 + 3600),  # some fall outside the day
)


def adapter(psp: str):
    cls = AlphaAdapter if psp == "alpha" else BetaAdapter
    return cls(
        name=psp,
        options={"base_url": "http://127.0.0.1:9"},
        credentials={"api_key": "k", "webhook_secret": "s"},
        http=httpx.Client(),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(psp=st.sampled_from(["alpha", "beta"]), entries=st.lists(entry, max_size=12))
def test_report_parses_back_to_what_was_settled(psp, entries):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(db_path(Path(tmp), psp))
        expected = set()
        for kind, amount, currency, offset in entries:
            at = START + offset
            pid, ref = new_id("auth_" if psp == "alpha" else "BP"), new_id("att_")
            store.insert(
                "payments",
                {
                    "id": pid, "reference": ref, "request_hash": "h", "method": "card", "amount": amount,
                    "currency": currency, "state": "captured", "amount_captured": amount, "created_at": at,
                    "updated_at": at,
                },
            )  # fmt: skip
            fee = fee_for(psp, kind, amount, currency)
            if kind in ("chargeback", "won"):
                won = kind == "won"
                store.insert(
                    "disputes",
                    {
                        "id": new_id("dp_"), "payment_id": pid, "reason": "fraudulent", "amount": amount,
                        "currency": currency, "status": "won" if won else "needs_response",
                        "fee": fee_for(psp, "chargeback", amount, currency),
                        "created_at": START - 86400 if won else at, "closed_at": at if won else None,
                    },
                )  # fmt: skip
            elif kind in ("returned", "returned_later"):
                fee = fee_for(psp, "refund", amount, currency)
                done, back = (START - 86400, at) if kind == "returned" else (at, START + 3 * 86400)
                store.insert(
                    "operations",
                    {
                        "id": new_id("op_"), "payment_id": pid, "kind": "refund", "reference": new_id("re_"),
                        "amount": amount, "currency": currency, "state": "failed", "decline": "refund_rejected",
                        "fee": fee, "created_at": done, "completed_at": done, "returned_at": back,
                    },
                )  # fmt: skip
                if kind == "returned":
                    fee = 0  # the reversal: the refund fee is not returned, none is charged
            else:
                op_ref = new_id("cap_" if kind == "capture" else "re_")
                store.insert(
                    "operations",
                    {
                        "id": new_id("op_"), "payment_id": pid, "kind": kind, "reference": op_ref, "amount": amount,
                        "currency": currency, "state": "succeeded", "fee": fee, "created_at": at, "completed_at": at,
                    },
                )  # fmt: skip
            if START <= at < START + 86400:
                gross = amount if kind in ("capture", "won", "returned") else -amount
                row_kind = {"won": SettlementKind.CHARGEBACK_REVERSAL, "returned": SettlementKind.REFUND_REVERSAL,
                            "returned_later": SettlementKind.REFUND}.get(kind) or SettlementKind(kind)
                expected.add((row_kind, ref, pid, gross, fee, gross - fee, currency))
        store.close()
        report = adapter(psp).read_settlement_report(reports.render(psp, db_path(Path(tmp), psp), DAY))
    assert report.errors == ()
    assert report.period_start == report.period_end == DAY
    got = {(r.kind, r.reference, r.psp_reference, r.gross, r.fee, r.net, r.currency) for r in report.rows}
    assert got == expected
    assert all(r.settled_on == DAY for r in report.rows)
