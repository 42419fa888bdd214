"""Balance transaction pages of a large merchant: `python -m bench.balance_pages [--journals N] [--keep]`.

Fills its own database (payera_bench_balance_pages, re-created) through `ledger.services
.journal_post_many` (1,000 journals a call) with N capture-like journals (default 1,000,000): 99 %
for one large merchant (`mer_big`, its pending and available accounts in EUR and USD) and 1 % for a
small one, then prints, for a first page and for pages at several depths of the large merchant's
history (limit 10, the API's default), the median time of `ledger.selectors
.balance_transaction_page` next to two baselines measured in the same run on the same data:

- **floor**: PostgreSQL reading the 11 newest entries of one account through its
  (account, version) index, bare SQL (what a page cannot beat);
- **single sort**: the one query the page was before session 17 (every entry of the owner joined
  to its journal and sorted by (created_at, id) for the 11 newest below the cursor).

Ratios: page / floor (lower is better), single sort / page (the speed-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime

from bench.db import django_on_own_database

DB = "payera_bench_balance_pages"
LIMIT = 10
RUNS = 7


def fill(journals: int) -> float:
    from ledger import services
    from ledger.types import Accounts, JournalKind, JournalRequest, PostingLine

    now = datetime.now(UTC)
    started = time.perf_counter()
    for start in range(0, journals, 1000):
        batch = []
        for i in range(start, min(start + 1000, journals)):
            merchant = "mer_small" if i % 100 == 0 else "mer_big"
            currency = "USD" if i % 7 == 0 else "EUR"
            account = Accounts.merchant_available if i % 3 == 0 else Accounts.merchant_pending
            batch.append(
                JournalRequest(
                    reference=f"bench:{uuid.uuid4().hex}",
                    kind=JournalKind.CAPTURE,
                    occurred_at=now,
                    lines=(
                        PostingLine.debit(Accounts.psp_receivable("alpha", currency), 1000),
                        PostingLine.credit(account(merchant, currency), 970),
                        PostingLine.credit(Accounts.fee_revenue(currency), 30),
                    ),
                )
            )
        services.journal_post_many(batch)
    return time.perf_counter() - started


def median_ms(fn) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journals", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="reuse the filled database")
    args = parser.parse_args(argv)

    django_on_own_database(DB, keep=args.keep)
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Q

    from ledger.models import Account
    from ledger.selectors import balance_transaction_list, balance_transaction_page, booked_final_before

    if not args.keep:
        call_command("migrate", verbosity=0)
        print(f"filled {args.journals:,} journals in {fill(args.journals):.1f} s", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE ledger_entry")
            cursor.execute("VACUUM ANALYZE ledger_journal")

    owner = "mer_big"
    entries = balance_transaction_list(owner=owner).count()
    ids = list(balance_transaction_list(owner=owner).values_list("id", flat=True))
    account_id = (
        Account.objects.filter(owner=owner, code="merchant_pending", currency="EUR").values_list("id", flat=True).get()
    )

    def single_sort(cursor_id: int | None) -> None:
        qs = balance_transaction_list(owner=owner)
        if cursor_id is None:
            qs = qs.filter(created_at__lt=booked_final_before())
        else:
            at, anchor = qs.filter(id=cursor_id).values_list("created_at", "id").get()
            qs = qs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=anchor))
        list(qs[: LIMIT + 1])

    def floor() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, amount, balance_after FROM ledger_entry WHERE account_id = %s"
                " ORDER BY version DESC LIMIT %s",
                [account_id, LIMIT + 1],
            )
            cursor.fetchall()

    print(
        f"{owner}: {entries:,} entries on {Account.objects.filter(owner=owner).count()} accounts; "
        f"limit {LIMIT}, median of {RUNS}",
        flush=True,
    )
    print(f"{'page':22s} {'page ms':>9s} {'floor ms':>9s} {'sort ms':>9s} {'page/floor':>11s} {'sort/page':>10s}")
    ratios = []
    for label, position in (("first", None), ("10 % deep", 0.1), ("50 % deep", 0.5), ("99 % deep", 0.99)):
        cursor_id = None if position is None else ids[int(len(ids) * position)]
        page_ms = median_ms(lambda c=cursor_id: balance_transaction_page(owner=owner, limit=LIMIT, starting_after=c))
        floor_ms = median_ms(floor)
        sort_ms = median_ms(lambda c=cursor_id: single_sort(c))
        ratios.append((page_ms / floor_ms, sort_ms / page_ms))
        print(
            f"{label:22s} {page_ms:9.2f} {floor_ms:9.2f} {sort_ms:9.1f} {page_ms / floor_ms:11.1f} "
            f"{sort_ms / page_ms:10.1f}",
            flush=True,
        )
    worst = max(r[0] for r in ratios)
    print(
        f"worst page / floor {worst:.1f}x; single sort / page {min(r[1] for r in ratios):.0f}x to "
        f"{max(r[1] for r in ratios):.0f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
