"""Client processes for the ledger benchmark (Payera's own venv, django set up by the parent)."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime


def _accounts(n: int):
    from ledger.types import Accounts

    return [Accounts.merchant_available(f"mer_bench{i:05d}", "EUR") for i in range(n)]


def run_client(kind: str, n_accounts: int, seconds: float, start, out, seed: int) -> None:
    from django.db import connection

    from ledger.services import journal_post
    from ledger.types import AccountKey, Accounts, AccountType, PostingLine  # noqa: F401

    connection.close()  # never share the parent's socket
    rng = random.Random(seed)
    accounts = _accounts(n_accounts)
    hot = Accounts.fee_revenue("EUR") if kind == "hot" else AccountKey("platform", "naive_hot", "EUR")
    prefix = f"bench:{kind}:{uuid.uuid4().hex[:8]}:"
    now = datetime.now(UTC)
    start.wait()
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        amount = rng.randint(1, 1000)
        if kind == "uniform":
            a, b = rng.sample(accounts, 2)
            lines = (PostingLine(a, amount), PostingLine(b, -amount))
        else:  # every posting touches one platform account
            lines = (PostingLine(rng.choice(accounts), amount), PostingLine(hot, -amount))
        journal_post(reference=f"{prefix}{n}", lines=lines, occurred_at=now)
        n += 1
    connection.close()
    out.put(n)


def run_batch_client(n_accounts: int, calls: int, per_call: int, start, out, seed: int) -> None:
    from django.db import connection

    from ledger.services import journal_post_many
    from ledger.types import JournalRequest, PostingLine

    connection.close()
    rng = random.Random(seed)
    accounts = _accounts(n_accounts)
    prefix = f"bench:batch:{uuid.uuid4().hex[:8]}:"
    now = datetime.now(UTC)
    batches = []
    for c in range(calls):
        reqs = []
        for i in range(per_call):
            a, b = rng.sample(accounts, 2)
            amount = rng.randint(1, 1000)
            reqs.append(
                JournalRequest(
                    reference=f"{prefix}{c}:{i}",
                    lines=(PostingLine(a, amount), PostingLine(b, -amount)),
                    occurred_at=now,
                )
            )
        batches.append(reqs)
    start.wait()
    for reqs in batches:
        journal_post_many(reqs)
    connection.close()
    out.put(calls * per_call)
