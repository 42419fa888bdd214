"""Client processes for the ledger benchmark (Payera's own venv, django set up by the parent)."""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime


def _accounts(n: int):
    from ledger.types import Accounts

    return [Accounts.merchant_available(f"mer_bench{i:05d}", "EUR") for i in range(n)]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process on this machine (the bench's PostgreSQL is local)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def run_client(kind: str, n_accounts: int, seconds: float, start, out, seed: int) -> None:
    """Posts for `seconds`; reports (journals, this process's CPU s, its backend's CPU s)."""
    from django.db import connection

    from ledger.services import journal_post
    from ledger.types import AccountKey, Accounts, AccountType, PostingLine  # noqa: F401

    connection.close()  # never share the parent's socket
    rng = random.Random(seed)
    accounts = _accounts(n_accounts)
    hot = Accounts.fee_revenue("EUR") if kind == "hot" else AccountKey("platform", "naive_hot", "EUR")
    prefix = f"bench:{kind}:{uuid.uuid4().hex[:8]}:"
    now = datetime.now(UTC)
    backend = backend_pid(connection)
    start.wait()
    cpu0, backend0 = time.process_time(), process_cpu(backend)
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
    cpu, backend_cpu = time.process_time() - cpu0, process_cpu(backend) - backend0
    connection.close()
    out.put((n, cpu, backend_cpu))


def run_batch_client(n_accounts: int, calls: int, per_call: int, start, out, seed: int) -> None:
    from django.db import connection

    from ledger.services import journal_post_many
    from ledger.types import JournalRequest, PostingLine

    connection.close()
    backend = backend_pid(connection)
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
    cpu0, backend0 = time.process_time(), process_cpu(backend)
    for reqs in batches:
        journal_post_many(reqs)
    cpu, backend_cpu = time.process_time() - cpu0, process_cpu(backend) - backend0
    connection.close()
    out.put((calls * per_call, cpu, backend_cpu))
