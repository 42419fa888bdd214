"""What a journal's text may hold is the same rule on every engine: a NUL character (in the
reference, kind, memo or metadata) or a NaN/Infinity in metadata is refused up front with
InvalidPostingError, nothing written. Shared by tests/ledger/test_posting_text.py (PostgreSQL, both
engines) and tests/ledger/sqlite_embedded_check.py (SQLite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ledger import services
from ledger.errors import InvalidPostingError
from ledger.models import Journal
from ledger.types import AccountKey, AccountType, transfer_lines


def check_text_a_database_cannot_store_is_refused_alike() -> None:
    tag = uuid.uuid4().hex[:10]
    src = AccountKey("mer_tx" + tag, "src", "EUR")
    dst = AccountKey("mer_tx" + tag, "dst", "EUR")
    services.account_get_or_create(key=src, type=AccountType.ASSET)
    services.account_get_or_create(key=dst, type=AccountType.LIABILITY)
    lines = transfer_lines(debit=src, credit=dst, amount=10)
    bad = {
        "reference": {"reference": f"ref\x00:{tag}"},
        "memo": {"memo": "refund for order\x00 42"},
        "kind": {"kind": "capture\x00"},
        "metadata string": {"metadata": {"note": "a\x00b"}},
        "metadata key": {"metadata": {"k\x00": 1}},
        "metadata nan": {"metadata": {"rate": float("nan")}},
        "metadata infinity": {"metadata": {"rate": float("inf")}},
    }
    for name, fields in bad.items():
        kwargs = {"reference": f"t:{name}:{tag}", "lines": lines, "occurred_at": datetime.now(UTC), **fields}
        try:
            services.journal_post(**kwargs)
        except InvalidPostingError:
            pass
        else:
            raise AssertionError(f"a journal with a {name} no database keeps alike was posted")
    assert not Journal.objects.filter(reference__contains=tag).exists()
    try:
        AccountKey("mer_tx" + tag, "wal\x00let", "EUR")
    except ValueError:
        pass
    else:
        raise AssertionError("an account key with a NUL character was accepted")
    ok = services.journal_post(reference=f"t:ok:{tag}", lines=lines, occurred_at=datetime.now(UTC), memo="fine",
                               metadata={"rate": 1.5, "note": "é ✓"})  # fmt: skip
    assert ok.created
