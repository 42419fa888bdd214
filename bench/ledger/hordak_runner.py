"""django-hordak doing the ledger benchmark's postings, in its OWN virtualenv (never Payera's).

    <hordak venv>/bin/python bench/ledger/hordak_runner.py DB_URL CLIENTS SECONDS ACCOUNTS

Prints one JSON line: {"journals": n, "seconds": s, "client_cpu": s, "backend_cpu": s}. Each
posting is the same as Payera's: one balanced two-leg transfer between two random accounts, in its
own transaction. (CPU: the client processes' and their PostgreSQL backends', read from /proc.)
"""

import json
import multiprocessing as mp
import os
import random
import sys
import time
from urllib.parse import urlparse


def configure(db_url: str) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    u = urlparse(db_url)
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "mptt", "hordak"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": u.path.lstrip("/"),
                "USER": u.username or "postgres",
                "HOST": u.hostname or "127.0.0.1",
                "PORT": u.port or 5432,
            }
        },
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        HORDAK_DECIMAL_PLACES=2,
        DEFAULT_CURRENCY="EUR",
        CURRENCIES=["EUR"],
        HORDAK_CURRENCIES=["EUR"],
    )
    django.setup()


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(db_url, ids, seconds, start, out, seed):
    configure(db_url)
    from django.db import connection, transaction
    from djmoney.money import Money
    from hordak.models import Account

    accounts = list(Account.objects.filter(id__in=ids))
    rng = random.Random(seed)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    start.wait()
    cpu0, backend0 = time.process_time(), process_cpu(backend)
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        a, b = rng.sample(accounts, 2)
        with transaction.atomic():
            a.transfer_to(b, Money(rng.randint(1, 1000), "EUR"))
        n += 1
    cpu, backend_cpu = time.process_time() - cpu0, process_cpu(backend) - backend0
    connection.close()
    out.put((n, cpu, backend_cpu))


def main() -> None:
    db_url, clients, seconds, n_accounts = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    configure(db_url)
    from django.core.management import call_command
    from django.db import connection
    from hordak.models import Account

    call_command("migrate", verbosity=0)
    ids = list(Account.objects.values_list("id", flat=True)[:n_accounts])
    for i in range(len(ids), n_accounts):
        ids.append(Account.objects.create(name=f"acct{i}", type=Account.TYPES.asset, currencies=["EUR"]).id)
    connection.close()
    ctx = mp.get_context("fork")
    start = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=client, args=(db_url, ids, seconds, start, out, i)) for i in range(clients)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    results = [out.get() for _ in procs]
    elapsed = max(seconds, time.perf_counter() - t0)
    for p in procs:
        p.join()
    print(
        json.dumps(
            {
                "journals": sum(r[0] for r in results),
                "seconds": elapsed,
                "client_cpu": sum(r[1] for r in results),
                "backend_cpu": sum(r[2] for r in results),
            }
        )
    )


if __name__ == "__main__":
    main()
