"""Ledger benchmark: `python -m bench.ledger [--seconds S] [--quick]`.

Measures, in one run on the same PostgreSQL: pgbench -N (the commit limit), Payera's ledger
(single postings at 8 and 16 clients, uniform and hot-account; journal_post_many; ledger_verify;
storage) and, when its separate virtualenv exists, django-hordak doing the same postings.
Prints figures and the ratios the issue sets as goals. Uses its own databases
(payera_bench_*), dropped and re-created on each run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PG = dict(host="127.0.0.1", port="5432", user="postgres")
LEDGER_DB = "payera_bench_ledger"
PGBENCH_DB = "payera_bench_pgbench"
HORDAK_DB = "payera_bench_hordak"
N_ACCOUNTS = 1000
ROOT = Path(__file__).resolve().parents[2]


def url(db: str) -> str:
    return f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{db}"


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-qAt", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", db, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def recreate(db: str) -> None:
    psql(f"DROP DATABASE IF EXISTS {db}")
    psql(f"CREATE DATABASE {db}")


def pgbench_bin() -> str:
    found = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    if not os.path.exists(found):
        raise SystemExit("pgbench not found (apt-get install postgresql-client-15)")
    return found


def run_pgbench(clients: int, seconds: float) -> float:
    conn = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    subprocess.run([pgbench_bin(), "-q", "-i", "-s", "8", *conn, PGBENCH_DB], check=True, capture_output=True)
    out = subprocess.run(
        [pgbench_bin(), "-N", "-n", "-c", str(clients), "-j", "2", "-T", str(int(seconds)), *conn, PGBENCH_DB],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def pgbench_cpu(clients: int, seconds: float) -> tuple[float, float]:
    """CPU per pgbench -N transaction (pgbench itself, its backends), from a separate run that is
    not part of any ratio: backends sampled from /proc between 1 s and seconds - 1 s."""
    import resource

    from bench.ledger.clients import process_cpu

    conn = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    subprocess.run([pgbench_bin(), "-q", "-i", "-s", "8", *conn, PGBENCH_DB], check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [pgbench_bin(), "-N", "-n", "-c", str(clients), "-j", "2", "-T", str(int(seconds)), *conn, PGBENCH_DB],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    pids = [int(x) for x in psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{PGBENCH_DB}'").split()]
    cpu0 = {pid: process_cpu(pid) for pid in pids}
    t0 = time.perf_counter()
    time.sleep(max(seconds - 2, 1))
    backend = sum(process_cpu(pid) - cpu0[pid] for pid in pids)
    window = time.perf_counter() - t0
    out, _ = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    done = float(re.search(r"actually processed: (\d+)", out).group(1))
    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return client / done, backend / (tps * window)


def run_pgbench_posting(clients: int, seconds: float) -> float:
    """ledger_post_one() driven by pgbench itself (C client): the database side alone."""
    conn = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    script = str(Path(__file__).with_name("pgbench_post.sql"))
    base, top = (
        int(x)
        for x in psql(
            "SELECT min(id), max(id) FROM ledger_account WHERE owner LIKE 'mer_bench%' AND parent_id IS NULL", LEDGER_DB
        ).split("|")
    )
    if top - base != N_ACCOUNTS - 1:
        raise SystemExit("bench: the merchants' ids are not consecutive (pgbench_post.sql needs them so)")
    out = subprocess.run(
        [pgbench_bin(), "-n", "-f", script, "-D", f"base={base}", "-c", str(clients), "-j", "2", "-T",
         str(int(seconds)), *conn, LEDGER_DB],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def setup_django() -> None:
    os.environ["DATABASE_URL"] = url(LEDGER_DB)
    os.environ.setdefault("REDIS_URL", "")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def warm_up() -> None:
    """Create the accounts (1,000 merchants, the hot and the naive single-row account)."""
    from datetime import UTC, datetime

    from ledger.services import account_get_or_create, journal_post_many
    from ledger.types import AccountKey, Accounts, AccountType, JournalRequest, PostingLine

    account_get_or_create(key=AccountKey("platform", "naive_hot", "EUR"), type=AccountType.REVENUE)
    accounts = [Accounts.merchant_available(f"mer_bench{i:05d}", "EUR") for i in range(N_ACCOUNTS)]
    now = datetime.now(UTC)
    reqs = [
        JournalRequest(
            reference=f"warm:{i}",
            occurred_at=now,
            lines=(PostingLine(Accounts.fee_revenue("EUR"), 1), PostingLine(a, -1)),
        )
        for i, a in enumerate(accounts)
    ]
    journal_post_many(reqs)


# CPU per journal (client processes, their backends) of the runs, by name: "where the time goes".
COSTS: dict[str, list[tuple[float, float]]] = {}


def parallel(target, args_for, clients: int) -> tuple[int, float, float | None, float | None]:
    """Runs `clients` processes; returns (journals, seconds, client CPU s, backend CPU s), the CPU
    figures when the clients report them."""
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("fork")
    start = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), start, out, i)) for i in range(clients)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    if all(isinstance(r, tuple) for r in results):
        return sum(r[0] for r in results), elapsed, sum(r[1] for r in results), sum(r[2] for r in results)
    return sum(results), elapsed, None, None


def ledger_rate(kind: str, clients: int, seconds: float) -> float:
    from bench.ledger.clients import run_client

    total, elapsed, client_cpu, backend_cpu = parallel(run_client, lambda i: (kind, N_ACCOUNTS, seconds), clients)
    if total and client_cpu is not None:
        COSTS.setdefault(f"journal_post {kind} {clients} cl.", []).append((client_cpu / total, backend_cpu / total))
    return total / max(elapsed, seconds)


def batch_rate(clients: int, calls: int, per_call: int) -> float:
    from bench.ledger.clients import run_batch_client

    total, elapsed, client_cpu, backend_cpu = parallel(
        run_batch_client, lambda i: (N_ACCOUNTS, calls, per_call), clients
    )
    if total and client_cpu is not None:
        COSTS.setdefault(f"journal_post_many x{per_call} {clients} cl.", []).append(
            (client_cpu / total, backend_cpu / total)
        )
    return total / elapsed


def verify_rate() -> tuple[float, int, bool]:
    from ledger.verify import ledger_verify

    ledger_verify(checks=("limit_breaches",))  # warm the connection
    t0 = time.perf_counter()
    report = ledger_verify()
    elapsed = time.perf_counter() - t0
    return report.entries / elapsed, report.entries, report.ok


def storage_per_journal() -> float:
    from django.db import connection

    with connection.cursor() as c:
        c.execute(
            "SELECT pg_total_relation_size('ledger_journal') + pg_total_relation_size('ledger_entry'),"
            " (SELECT count(*) FROM ledger_journal),"
            " (SELECT count(*) FROM ledger_entry)"
        )
        size, journals, entries = c.fetchone()
    assert entries == 2 * journals, "the storage figure assumes two-entry journals"
    return size / journals


def run_hordak(python: str, clients: int, seconds: float) -> float | None:
    if not os.path.exists(python):
        return None
    recreate(HORDAK_DB)
    out = (
        subprocess.run(
            [
                python,
                str(Path(__file__).with_name("hordak_runner.py")),
                url(HORDAK_DB),
                str(clients),
                str(seconds),
                str(N_ACCOUNTS),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    data = json.loads(out)
    if data["journals"] and "client_cpu" in data:
        COSTS.setdefault(f"django-hordak {clients} cl.", []).append(
            (data["client_cpu"] / data["journals"], data["backend_cpu"] / data["journals"])
        )
    return data["journals"] / data["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each timed run")
    parser.add_argument(
        "--hordak-python",
        default=os.environ.get("HORDAK_PYTHON", str(ROOT / "var/bench-hordak-venv/bin/python")),
        help="python of a separate venv with django-hordak 2.x (skipped if missing)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for the ratios (median)")
    parser.add_argument(
        "--install-hordak",
        action="store_true",
        help="create the separate django-hordak venv at --hordak-python's location first (never Payera's venv)",
    )
    args = parser.parse_args(argv)
    if args.install_hordak and not os.path.exists(args.hordak_python):
        venv = Path(args.hordak_python).parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                args.hordak_python,
                "-m",
                "pip",
                "install",
                "-q",
                "django-hordak>=2,<3",
                "Django==5.2.19",
                "psycopg[binary]==3.3.9",
            ],
            check=True,
        )
    s = args.seconds

    recreate(LEDGER_DB)
    recreate(PGBENCH_DB)
    setup_django()
    warm_up()
    r: dict[str, float | None] = {}
    print(f"ledger bench: {os.cpu_count()} cores, {s:.0f}s per run, {N_ACCOUNTS} merchant accounts", flush=True)
    # The machine may be shared: the figures that make a ratio are measured in alternating rounds,
    # side by side, and the median of the rounds is kept.
    rounds: dict[str, list[float]] = {k: [] for k in ("pgbench_N_8", "uniform_8", "hordak_8", "sql_8")}
    for n in range(args.rounds):
        rounds["pgbench_N_8"].append(run_pgbench(8, s))
        rounds["sql_8"].append(run_pgbench_posting(8, s))
        rounds["uniform_8"].append(ledger_rate("uniform", 8, s))
        h = run_hordak(args.hordak_python, 8, s)
        if h is not None:
            rounds["hordak_8"].append(h)
        print(f"  round {n + 1}: pgbench -N {rounds['pgbench_N_8'][-1]:,.0f} tps, "
              f"ledger_post_one() from pgbench {rounds['sql_8'][-1]:,.0f}/s, journal_post "
              f"{rounds['uniform_8'][-1]:,.0f}/s, hordak {'n/a' if h is None else f'{h:,.0f}/s'} (8 clients)",
              flush=True)
    r["pgbench_N_8"] = statistics.median(rounds["pgbench_N_8"])
    r["uniform_8"] = statistics.median(rounds["uniform_8"])
    r["sql_8"] = statistics.median(rounds["sql_8"])
    r["ratio_sql"] = statistics.median(q / p for q, p in zip(rounds["sql_8"], rounds["pgbench_N_8"], strict=True))
    r["hordak_8"] = statistics.median(rounds["hordak_8"]) if rounds["hordak_8"] else None
    r["ratio_pgbench"] = statistics.median(
        u / p for u, p in zip(rounds["uniform_8"], rounds["pgbench_N_8"], strict=True)
    )
    r["ratio_hordak"] = (
        statistics.median(u / h for u, h in zip(rounds["uniform_8"], rounds["hordak_8"], strict=True))
        if rounds["hordak_8"] else None
    )
    print(f"  pgbench -N, 8 clients (median):               {r['pgbench_N_8']:>10,.0f} tps", flush=True)
    print(f"  ledger_post_one() from pgbench, 8 clients:    {r['sql_8']:>10,.0f} journals/s", flush=True)
    print(f"  journal_post, uniform accounts, 8 clients:    {r['uniform_8']:>10,.0f} journals/s", flush=True)
    if r["hordak_8"] is None:
        print(f"  django-hordak: skipped ({args.hordak_python} missing; --install-hordak creates it)")
    else:
        print(f"  django-hordak 2.x transfer_to, 8 clients:     {r['hordak_8']:>10,.0f} journals/s", flush=True)
    hot_rounds, uni_rounds, naive_rounds = [], [], []
    for _ in range(args.rounds):
        uni_rounds.append(ledger_rate("uniform", 16, s))
        hot_rounds.append(ledger_rate("hot", 16, s))
        naive_rounds.append(ledger_rate("naive", 16, s))
    r["uniform_16"] = statistics.median(uni_rounds)
    r["hot_16"] = statistics.median(hot_rounds)
    r["naive_16"] = statistics.median(naive_rounds)
    r["ratio_hot"] = statistics.median(h / u for h, u in zip(hot_rounds, uni_rounds, strict=True))
    r["ratio_naive"] = statistics.median(h / u for h, u in zip(naive_rounds, uni_rounds, strict=True))
    print(f"  journal_post, uniform accounts, 16 clients:   {r['uniform_16']:>10,.0f} journals/s", flush=True)
    print(f"  journal_post, one hot account, 16 clients:    {r['hot_16']:>10,.0f} journals/s", flush=True)
    print(f"  journal_post, one locked row (naive), 16 cl.: {r['naive_16']:>10,.0f} journals/s", flush=True)
    r["batch_1"] = batch_rate(1, 5, 1000)
    print(f"  journal_post_many x1000, 1 client:            {r['batch_1']:>10,.0f} journals/s", flush=True)
    r["batch_2"] = batch_rate(2, 5, 1000)
    print(f"  journal_post_many x1000, 2 clients:           {r['batch_2']:>10,.0f} journals/s", flush=True)
    r["verify_rate"], entries, ok = verify_rate()
    print(f"  ledger_verify over {entries:,} entries:          {r['verify_rate']:>10,.0f} entries/s (clean: {ok})",
          flush=True)
    r["bytes_per_journal"] = storage_per_journal()
    print(f"  storage per two-entry journal (with indexes): {r['bytes_per_journal']:>10,.0f} bytes", flush=True)
    COSTS["pgbench -N 8 cl. (separate run)"] = [pgbench_cpu(8, s)]
    print("CPU per journal (median of the runs; client processes + their PostgreSQL backends; not ratios):")
    for name, values in COSTS.items():
        client = statistics.median(v[0] for v in values) * 1e6
        backend = statistics.median(v[1] for v in values) * 1e6
        r[f"cpu_us {name}"] = client + backend
        print(
            f"  {name:<42} {client:>6,.0f} us client + {backend:>6,.0f} us backend = {client + backend:>6,.0f} us"
            f"  (CPU-bound: {1e6 / (client + backend):>6,.0f}/s per core)"
        )

    def ratio(name: str, value: float | None, goal: str, met: bool | None) -> None:
        shown = "n/a" if value is None else f"{value:,.2f}"
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"  {name:<52} {shown:>8}   goal {goal:<10} {verdict}")

    print("ratios (same run; medians of side-by-side rounds):")
    ratio("journals/s at 8 clients", r["uniform_8"], ">= 1,000", r["uniform_8"] >= 1000)
    ratio("uniform 8 clients / pgbench -N 8 clients", r["ratio_pgbench"], ">= 0.40", r["ratio_pgbench"] >= 0.40)
    ratio("(database side only) SQL posting / pgbench -N, 8 cl.", r["ratio_sql"], "-", None)
    ratio("uniform 8 clients / django-hordak 8 clients", r["ratio_hordak"], ">= 5",
          None if r["ratio_hordak"] is None else r["ratio_hordak"] >= 5)
    ratio("hot 16 clients / uniform 16 clients", r["ratio_hot"], ">= 0.80", r["ratio_hot"] >= 0.8)
    ratio("naive one-row 16 clients / uniform 16 (for contrast)", r["ratio_naive"], "-", None)
    ratio("journal_post_many journals/s (1 client)", r["batch_1"], ">= 10,000", r["batch_1"] >= 10_000)
    ratio("ledger_verify entries/s", r["verify_rate"], ">= 200,000", r["verify_rate"] >= 200_000)
    ratio("bytes per two-entry journal", r["bytes_per_journal"], "<= 750", r["bytes_per_journal"] <= 750)
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
