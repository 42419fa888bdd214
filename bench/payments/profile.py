"""Where one `POST /v1/payments` spends its time, in process (no gunicorn, no load generator):
`python -m bench.payments.profile [--payments 200] [--cprofile out.prof]`.

Starts the alpha sandbox on loopback, re-creates its own database (payera_bench_profile, or
$PAYERA_BENCH_DB; Redis db 9 or $PAYERA_BENCH_REDIS_URL),
then sends the bench's payment (automatic capture, card 4242…, a fresh Idempotency-Key)
through Django's test client and prints, per payment: SQL queries, transactions committed,
wall and CPU milliseconds (this process: Django/DRF/FSM and the client side of the PSP call) and
the CPU milliseconds of its PostgreSQL backend.
With `--cprofile FILE` the measured payments also run under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DB = os.environ.get("PAYERA_BENCH_DB", "payera_bench_profile")
REDIS_URL = os.environ.get("PAYERA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--cprofile", default="")
    parser.add_argument("--cpu-clock", action="store_true",
                        help="cProfile counts this process's CPU time (time.process_time), not wall time: "
                             "waits on PostgreSQL and alpha drop out")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of the last payment")
    parser.add_argument("--keep-db", action="store_true", help="reuse the database (no re-create, no migrate)")
    parser.add_argument("--no-capture", action="store_true",
                        help="no query capture (Django then composes no statement text for its log, as under "
                             "gunicorn): the CPU figure as a server spends it; the query counts are not reported")
    opts = parser.parse_args()

    from bench.payments.__main__ import psql

    tmp = Path(tempfile.mkdtemp(prefix="payera-bench-profile-"))
    if not opts.keep_db:
        psql(f"DROP DATABASE IF EXISTS {DB}")
        psql(f"CREATE DATABASE {DB}")
    os.environ.update({
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}", "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "bench.payments.settings", "SECRETS_BACKEND": "local", "LOG_LEVEL": "WARNING",
        "API_RATE_LIMIT": "1000000/s", "PAYERA_VAR_DIR": str(tmp), "SANDBOX_DATA_DIR": str(tmp / "sandbox"),
        "SANDBOX_ALPHA_API_KEY": "alpha_bench_" + uuid.uuid4().hex, "SANDBOX_ALPHA_WEBHOOK_SECRET": "whsec_bench",
        "DB_CONN_MAX_AGE": "600",
    })
    (tmp / "sandbox").mkdir()
    from psp_adapters.sandbox import sandbox_command

    alpha = subprocess.Popen(sandbox_command("alpha", port=0, data_dir=tmp / "sandbox") + ["--exit-with-parent"],
                             cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([alpha.stdout], [], [], 20)
        line = alpha.stdout.readline().decode() if ready else ""
        os.environ["BENCH_ALPHA_URL"] = line.strip().rsplit(" ", 1)[-1]
        return _run(opts)
    finally:
        alpha.terminate()
        alpha.wait(10)


def _run(opts) -> int:
    import django

    from bench.payments.__main__ import proc_stat

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    class NoCapture:  # --no-capture: nothing captured, nothing composed
        captured_queries: list = []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    if not opts.keep_db:
        call_command("migrate", verbosity=0)
    from payera.merchants.models import Merchant
    from payera.merchants.services import api_key_create
    from payera.secrets.services import secret_put

    secret_put("psp/alpha", {"api_key": os.environ["SANDBOX_ALPHA_API_KEY"],
                             "webhook_secret": os.environ["SANDBOX_ALPHA_WEBHOOK_SECRET"]})
    merchant = Merchant.objects.create(name="bench-profile", connectors=["alpha"])
    secret = api_key_create(merchant=merchant).secret
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    body = json.dumps({"amount": 1000, "currency": "EUR", "payment_method_data": {"type": "card", "card": CARD}})

    def pay() -> None:
        r = client.post("/v1/payments", body, content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY=f"prof-{uuid.uuid4().hex}")
        assert r.status_code == 201 and r.json()["status"] == "succeeded", r.content[:500]

    for _ in range(20):  # warm up: imports, caches, connections
        pay()

    commits = [0]
    real_commit = connection.commit

    def counting_commit(*a, **kw):
        commits[0] += 1
        return real_commit(*a, **kw)

    connection.commit = counting_commit
    autocommitted = [0]

    def count_autocommit(execute, sql, params, many, context):  # a write outside a transaction commits alone
        if not connection.in_atomic_block and sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            autocommitted[0] += 1
        return execute(sql, params, many, context)

    profiler = None
    if opts.cprofile:
        profiler = cProfile.Profile(time.process_time) if opts.cpu_clock else cProfile.Profile()
    with connection.cursor() as cursor:  # the one PostgreSQL backend serving this process
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    capture = NoCapture() if opts.no_capture else CaptureQueriesContext(connection)
    gc_seen = {"collections": [0, 0, 0], "cpu_s": 0.0, "started": 0.0}

    def gc_watch(phase: str, info: dict) -> None:  # the cyclic collector's passes during the measured payments
        if phase == "start":
            gc_seen["started"] = time.process_time()
        else:
            gc_seen["cpu_s"] += time.process_time() - gc_seen["started"]
            gc_seen["collections"][info["generation"]] += 1

    with capture as ctx, connection.execute_wrapper(count_autocommit):
        w0, c0, b0 = time.perf_counter(), time.process_time(), proc_stat(backend)[1]
        gc.callbacks.append(gc_watch)
        if profiler:
            profiler.enable()
        for _ in range(opts.payments):
            pay()
        if profiler:
            profiler.disable()
        gc.callbacks.remove(gc_watch)
        wall, cpu, backend_cpu = time.perf_counter() - w0, time.process_time() - c0, proc_stat(backend)[1] - b0
    connection.commit = real_commit
    n = opts.payments
    kinds = Counter(q["sql"].split(None, 1)[0].upper() for q in ctx.captured_queries)
    savepoints = sum(1 for q in ctx.captured_queries if q["sql"].startswith("SAVEPOINT"))
    sql_ms = sum(float(q["time"]) for q in ctx.captured_queries) * 1000
    print(json.dumps({
        "payments": n,
        "queries_per_payment": round(len(ctx.captured_queries) / n, 2),
        "savepoints_per_payment": round(savepoints / n, 2),
        "by_kind_per_payment": {k: round(v / n, 2) for k, v in kinds.most_common()},
        "transactions_committed_per_payment": round(commits[0] / n, 2),
        "autocommitted_writes_per_payment": round(autocommitted[0] / n, 2),
        "commits_per_payment": round((commits[0] + autocommitted[0]) / n, 2),
        "wall_ms_per_payment": round(wall * 1000 / n, 2),
        "cpu_ms_per_payment": round(cpu * 1000 / n, 2),
        "postgres_backend_cpu_ms_per_payment": round(backend_cpu * 1000 / n, 2),
        "sql_wall_ms_per_payment": round(sql_ms / n, 2),
        "gc_collections_per_payment_by_generation": [round(c / n, 3) for c in gc_seen["collections"]],
        "gc_cpu_ms_per_payment": round(gc_seen["cpu_s"] * 1000 / n, 3),
        "gc_threshold": gc.get_threshold(),
        "loadavg": os.getloadavg(),
    }, indent=2))
    if opts.show_queries:
        last = len(ctx.captured_queries) // n
        for q in ctx.captured_queries[-last:]:
            print(q["time"], q["sql"][:int(os.environ.get("SQLW", "300"))])
    if profiler:
        profiler.dump_stats(opts.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
