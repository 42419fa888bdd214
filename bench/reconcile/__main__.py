"""Reconciliation benchmark: `python -m bench.reconcile [--rows N]` (default 1,000,000).

In one run, on the same PostgreSQL and the same file:
- setup (not timed): N captured payments at alpha made with bulk SQL (`generate_series`, not the
  API), one aggregate capture journal so that the receivable holds what they captured, and alpha's
  settlement report of them (its own CSV format, one row per capture);
- Payera: `reconcile_import` of that file (parse by the adapter, COPY into the staging table,
  set-based matching, settlement journal, discrepancies, summary and receivable check);
- baseline: PostgreSQL alone doing `COPY` of the same file into a table plus one join of it with
  the captures (server-side CSV parsing, no Python per row).
Prints both times and the ratio (goal: <= 2x). Uses its own database (payera_bench_recon),
dropped and re-created on each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import subprocess
import sys
import time
from pathlib import Path

PG = dict(host="127.0.0.1", port="5432", user="postgres")
DB = "payera_bench_recon"
ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 23)


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-qAt", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", db, "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def setup_django() -> None:
    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    os.environ["DATABASE_URL"] = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{DB}"
    os.environ["REDIS_URL"] = ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SECRETS_BACKEND", "local")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_attempts(n: int) -> str:
    """N succeeded card payments at alpha, each one attempt and one capture, by bulk SQL."""
    from django.db import connection
    from django.utils import timezone

    from ledger.services import journal_post
    from ledger.types import Accounts, JournalKind, PostingLine
    from payera.secrets.services import secret_put
    from tests.merchants.factories import MerchantFactory

    secret_put("psp/alpha", {"api_key": "bench", "webhook_secret": "bench"})  # the adapter only parses here
    merchant = MerchantFactory(connectors=["alpha"]).id
    at = dt.datetime.combine(DAY, dt.time(12), dt.UTC)
    with connection.cursor() as c:
        c.execute(
            "INSERT INTO payments_payment (id, merchant_id, amount, currency, capture_method, status,"
            " amount_capturable, amount_captured, amount_refunded, amount_disputed, setup_future_usage, off_session,"
            " return_url, description, metadata, review_reason, inflight, idempotency_key, created_at, updated_at)"
            " SELECT 'pay_b' || lpad(i::text, 10, '0'), %s, 1000 + i %% 9000, 'EUR', 'automatic', 'succeeded', 0,"
            " 1000 + i %% 9000, 0, 0, '', false, '', '', '{}', '', '', '', %s, %s FROM generate_series(1, %s) i",
            [merchant, at, at, n],
        )
        c.execute(
            "INSERT INTO payments_paymentattempt (id, payment_id, merchant_id, sequence, connector, status, amount,"
            " currency, capture, psp_reference, psp_currency, decline_code, decline_class, psp_decline_code,"
            " decline_message, error, action_url, inquiries, needs_attention, created_at, updated_at, void_number)"
            " SELECT 'att_b' || lpad(i::text, 10, '0'), 'pay_b' || lpad(i::text, 10, '0'), %s, 1, 'alpha',"
            " 'captured', 1000 + i %% 9000, 'EUR', true, 'auth_b' || i, 'EUR', '', '', '', '', '', '', 0, false,"
            " %s, %s, 1"
            " FROM generate_series(1, %s) i",
            [merchant, at, at, n],
        )
        c.execute(
            "INSERT INTO payments_capture (id, payment_id, attempt_id, amount, currency, fee, status, psp_reference,"
            " failure_code, created_at, updated_at)"
            " SELECT 'cap_b' || lpad(i::text, 10, '0'), 'pay_b' || lpad(i::text, 10, '0'),"
            " 'att_b' || lpad(i::text, 10, '0'), 1000 + i %% 9000, 'EUR', 0, 'succeeded', 'op_b' || i, '', %s, %s"
            " FROM generate_series(1, %s) i",
            [at, at, n],
        )
        c.execute("SELECT SUM(amount) FROM payments_capture")
        total = int(c.fetchone()[0])
        c.execute("ANALYZE")
    journal_post(
        reference="bench:captures", occurred_at=timezone.now(), kind=JournalKind.CAPTURE,
        lines=(PostingLine(Accounts.psp_receivable("alpha", "EUR"), total),
               PostingLine(Accounts.merchant_pending(merchant, "EUR"), -total)),
    )  # fmt: skip
    return merchant


def alpha_report(n: int) -> bytes:
    """Alpha's report of the N captures, in its own format (fees by its fee schedule)."""
    from psp_adapters.alpha.adapter import AlphaAdapter
    from psp_adapters.sandbox.reports import ALPHA_COLUMNS

    fee_of = AlphaAdapter.default_fee_schedule.fee
    out = io.StringIO()
    out.write(",".join(ALPHA_COLUMNS) + "\n")
    batch = f"PB-{DAY:%Y%m%d}-EUR"
    for i in range(1, n + 1):
        gross = 1000 + i % 9000
        fee = fee_of("capture", gross, "EUR")
        out.write(f"capture,{DAY},{batch},auth_b{i},att_b{i:010d},op_b{i},cap_b{i:010d},EUR,{gross},{fee},"
                  f"{gross - fee},{DAY}T12:00:00Z\n")
    out.write(f"end_of_report,{DAY}" + "," * (len(ALPHA_COLUMNS) - 2) + "\n")
    return out.getvalue().encode()


def payera(raw: bytes) -> tuple[float, dict]:
    from reconciliation.services import reconcile_import

    t0 = time.perf_counter()
    result = reconcile_import(psp="alpha", raw=raw, file_name="bench.csv", source="command", actor="bench")
    elapsed = time.perf_counter() - t0
    from reconciliation.models import ReconciliationRun

    seconds = ReconciliationRun.objects.get(pk=result.run_id).summary.get("seconds", {})
    return elapsed, {**result.as_contract(), "receivable": list(result.receivable), "seconds": seconds}


def baseline(raw: bytes) -> tuple[float, int]:
    """PostgreSQL alone: COPY of the same file (server-side CSV) into a table, plus one join."""
    from django.db import connection, transaction

    from psp_adapters.sandbox.reports import ALPHA_COLUMNS

    types = {"gross_minor": "bigint", "fee_minor": "bigint", "net_minor": "bigint"}
    cols = ", ".join(f"{c} {types.get(c, 'text')}" for c in ALPHA_COLUMNS)
    with connection.cursor() as c:
        c.execute("DROP TABLE IF EXISTS bench_copy")
        c.execute(f"CREATE TABLE bench_copy ({cols})")
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as c:
        with c.cursor.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER true)") as copy:
            view = memoryview(raw)
            for start in range(0, len(raw), 1 << 20):
                copy.write(view[start : start + (1 << 20)])
        c.execute(
            "SELECT COUNT(*) FROM bench_copy b JOIN payments_capture x ON x.attempt_id = b.merchant_reference"
            " AND x.status = 'succeeded' WHERE b.gross_minor = x.amount"
        )
        matched = int(c.fetchone()[0])
    return time.perf_counter() - t0, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    n = args.rows
    setup_django()
    t0 = time.perf_counter()
    make_attempts(n)
    t_attempts = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = alpha_report(n)
    t_file = time.perf_counter() - t0
    print(f"setup: {n:,} attempts by bulk SQL in {t_attempts:.1f} s; report file {len(raw) / 1e6:.0f} MB "
          f"in {t_file:.1f} s")  # fmt: skip
    base, base_matched = baseline(raw)
    print(f"baseline  PostgreSQL COPY + one join : {base:7.2f} s  ({base_matched:,} rows joined)")
    took, result = payera(raw)
    print(f"Payera    reconcile_import           : {took:7.2f} s  ({result['matched']:,} of {result['rows']:,} matched,"
          f" discrepancies {sum(result['discrepancies'].values())})")  # fmt: skip
    print(f"ratio Payera / baseline              : {took / base:7.2f} x  (goal <= 2.00 x)")
    print(f"receivable after the run             : {result['receivable']}")
    print(f"rows/s                               : {result['rows'] / took:,.0f}")
    print("Payera by phase (s)                  : " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
