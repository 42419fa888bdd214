"""Payments benchmark: `python -m bench.payments [--seconds S] [--clients C] [--workers W]`.

Measured in one run on this machine, with gunicorn on loopback and the alpha sandbox on
loopback (a real HTTP PSP in its own process):
- `POST /v1/payments` (automatic capture, card approved by alpha, an Idempotency-Key per request):
  payments/s, p50 and p99 latency;
- a bare DRF endpoint (no auth) inserting one row: requests/s, p50, p99 — the floor of Django + DRF
  + PostgreSQL on this machine;
- alpha's own authorize, called directly with the same concurrency: its p50/p99 (PSP time);
then the ratios and the gateway overhead (p50 of POST /v1/payments minus alpha's p50).
The load comes from wrk (Debian's package; `load.lua` makes each request and checks each answer)
when it is installed, else from httpx in threads of this process (`--load-generator httpx`): the
load generator shares the two cores with what it measures, and wrk takes a fraction of the CPU.
Uses its own database (payera_bench_payments, re-created) and Redis db 9 (environment
PAYERA_BENCH_DB and PAYERA_BENCH_REDIS_URL choose others: several people on one machine).

The machine is shared: each phase reports the load average while it ran and gunicorn's own CPU
time per answered request (`server_cpu_ms_per_req`, from /proc: independent of what else runs);
`--rounds N` interleaves the phases N times and reports the median round of each. Before the rounds,
`--warmup-seconds` of payments give the database rows, then it is analyzed (a running platform's
tables have statistics; a fresh database's plans would be made for empty tables). Per answered
request each phase also reports the CPU of the bench database's PostgreSQL backends, of the alpha
sandbox, of the load generator (`client_cpu_ms_per_req`) and of the whole machine (`machine_busy_…`,
from /proc/stat: meaningful only when nothing else runs): together, where the two cores go.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DB = os.environ.get("PAYERA_BENCH_DB", "payera_bench_payments")
REDIS_URL = os.environ.get("PAYERA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(["psql", "-qAt", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql],
                   check=True, capture_output=True)


SETUP = """
import django, json, os
django.setup()
from payera.secrets.services import secret_put
from payera.merchants.services import api_key_create
from payera.merchants.models import Merchant
secret_put("psp/alpha", {"api_key": os.environ["SANDBOX_ALPHA_API_KEY"],
                         "webhook_secret": os.environ["SANDBOX_ALPHA_WEBHOOK_SECRET"]})
m = Merchant.objects.create(name="bench", connectors=["alpha"])
print(json.dumps({"merchant": m.id, "secret": api_key_create(merchant=m).secret}))
"""


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user + system so far) of a local process, from /proc; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (gunicorn's master
    and workers), from /proc: the server's own cost per request, whatever else the machine runs."""
    stats = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := proc_stat(int(e))) is not None}
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats[pid][1] if pid in stats else 0.0
        todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


def pids_cpu_s(pids: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each of these processes so far (gone ones left out)."""
    return {pid: st[1] for pid in pids if (st := proc_stat(pid)) is not None}


def backend_pids() -> set[int]:
    """The PostgreSQL backends connected to the bench's database (gunicorn keeps its connections:
    DB_CONN_MAX_AGE=600, so the same backends serve a whole phase)."""
    out = subprocess.run(["psql", "-qAt", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c",
                          f"SELECT pid FROM pg_stat_activity WHERE datname = '{DB}'"],
                         check=True, capture_output=True, text=True).stdout
    return {int(line) for line in out.split()}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores; /proc/stat): with nothing else running,
    what a request costs everything on the machine, Redis and the kernel included."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def load(call, *, clients: int, seconds: float) -> dict:
    """`clients` threads calling `call(client, i)` for `seconds`; latencies of 2xx answers."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                ok = call(client, f"{n}-{i}")
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors[0] += 1
                i += 1

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "ok": len(latencies), "errors": errors[0]}


WRK_SCRIPT = Path(__file__).with_name("load.lua")


def load_wrk(url: str, kind: str, *, clients: int, seconds: float, auth: str = "", merchant: str = "") -> dict:
    """The same closed loop as `load` (`clients` connections, each sending its next request when the
    last one is answered) driven by wrk (C, Debian's package) and its Lua script `load.lua`: a few
    tenths of a millisecond of CPU per request where httpx in Python threads takes 1-4 ms of the
    same two cores. The script checks every answer as `load`'s callers do."""
    before = os.times()
    out = subprocess.run(
        ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{max(1, round(seconds))}s", "--timeout", "30s",
         "-s", str(WRK_SCRIPT), url, "--", kind, auth, merchant],
        check=True, capture_output=True, text=True).stdout
    after = os.times()
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    ok = result["ok"]
    return {"rps": ok / result["seconds"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "ok": ok,
            "errors": result["errors"] + result["socket_errors"],
            "wrk_cpu_s": after.children_user - before.children_user + after.children_system - before.children_system}


def _median_run(runs: list[dict]) -> dict:
    """The round with the median throughput (its own p50/p99), with every round's rps listed."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    median = dict(ordered[(len(ordered) - 1) // 2])  # an even count: the lower of the middle two
    if len(runs) > 1:
        median["rps_each_round"] = [round(r["rps"], 1) for r in runs]
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=16)
    # gunicorn runs with the deployment's own settings (gunicorn.conf.py: one worker per core,
    # WEB_THREADS threads each, gthread; docs/deploy.md): these two only override them for a sweep.
    parser.add_argument("--workers", type=int, default=None, help="override gunicorn.conf.py's workers")
    parser.add_argument("--threads", type=int, default=None, help="override gunicorn.conf.py's threads")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the three phases this many times, interleaved (noisy machine); medians")
    # A platform taking payments has statistics on its tables; a re-created database has none, and
    # the plans made while its tables are tiny (sequential scans, kept by prepared statements) made
    # the first measured round the slowest. The warm-up sends payments, then ANALYZEs the database.
    parser.add_argument("--warmup-seconds", type=float, default=10,
                        help="payments sent before the database is analyzed and the rounds start")
    parser.add_argument("--load-generator", choices=("wrk", "httpx"), default=None,
                        help="wrk (default when installed: little CPU per request) or httpx threads in this process")
    opts = parser.parse_args()
    if opts.load_generator is None:
        opts.load_generator = "wrk" if shutil.which("wrk") else "httpx"

    tmp = Path(tempfile.mkdtemp(prefix="payera-bench-payments-"))
    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}", "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "bench.payments.settings", "SECRETS_BACKEND": "local", "LOG_LEVEL": "WARNING",
        "API_RATE_LIMIT": "1000000/s", "PAYERA_VAR_DIR": str(tmp), "SANDBOX_DATA_DIR": str(tmp / "sandbox"),
        "SANDBOX_ALPHA_API_KEY": "alpha_bench_" + uuid.uuid4().hex, "SANDBOX_ALPHA_WEBHOOK_SECRET": "whsec_bench",
        "PYTHONPATH": str(ROOT), "DB_CONN_MAX_AGE": "600",
    })
    (tmp / "sandbox").mkdir()
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    ids = json.loads(subprocess.run([py, "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True,
                                    text=True).stdout.strip().splitlines()[-1])
    from psp_adapters.sandbox import sandbox_command

    alpha = subprocess.Popen(sandbox_command("alpha", port=0, data_dir=tmp / "sandbox") + ["--exit-with-parent"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ready, _, _ = select.select([alpha.stdout], [], [], 20)
    line = alpha.stdout.readline().decode() if ready else ""
    alpha_url = line.strip().rsplit(" ", 1)[-1]
    env["BENCH_ALPHA_URL"] = alpha_url
    port = 18000 + os.getpid() % 1000
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))  # what gunicorn reads, in this environment
    served = {"workers": opts.workers or conf["workers"], "threads": opts.threads or conf["threads"]}
    gunicorn = subprocess.Popen(
        [str(Path(py).parent / "gunicorn"), "payera.wsgi:application", "-b", f"127.0.0.1:{port}",
         "-c", str(ROOT / "gunicorn.conf.py"), "--log-level", "warning",
         *(["--workers", str(opts.workers)] if opts.workers else []),
         *(["--threads", str(opts.threads)] if opts.threads else [])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        auth = {"Authorization": f"Bearer {ids['secret']}"}

        def payment(client: httpx.Client, n: str) -> bool:
            r = client.post(base + "/v1/payments", headers={**auth, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"},
                            json={"amount": 1000, "currency": "EUR",
                                  "payment_method_data": {"type": "card", "card": CARD}})
            return r.status_code == 201 and r.json()["status"] == "succeeded"

        def bare(client: httpx.Client, n: str) -> bool:
            return client.post(base + "/bench/bare", json={"merchant": ids["merchant"]}).status_code == 201

        alpha_auth = {"Authorization": f"Bearer {env['SANDBOX_ALPHA_API_KEY']}"}

        def psp(client: httpx.Client, n: str) -> bool:
            r = client.post(alpha_url + "/v1/authorizations", headers=alpha_auth, json={
                "merchant_reference": f"att_bench_{uuid.uuid4().hex}", "amount": 1000, "currency": "EUR",
                "capture": True, "initiator": "customer", "store_card": False, "description": "", "metadata": {},
                "card": {"number": CARD["number"], "expiry_month": 12, "expiry_year": 2034, "cvc": "123"}})
            return r.status_code in (200, 201)

        wrk_phases = {
            bare: (base + "/bench/bare", "bare", ""),
            payment: (base + "/v1/payments", "payment", ids["secret"]),
            psp: (alpha_url + "/v1/authorizations", "alpha", env["SANDBOX_ALPHA_API_KEY"]),
        }

        def drive(fn, seconds: float) -> dict:
            if opts.load_generator == "httpx":
                return load(fn, clients=opts.clients, seconds=seconds)
            url, kind, key = wrk_phases[fn]
            return load_wrk(url, kind, clients=opts.clients, seconds=seconds, auth=key, merchant=ids["merchant"])

        warmup = drive(payment, opts.warmup_seconds)  # rows for the planner's statistics
        psql("VACUUM ANALYZE", db=DB)
        for fn in (bare, payment, psp):  # warm up every path, connection pool and (new) plan
            drive(fn, 2)
        rounds: dict[str, list[dict]] = {"bare_drf_insert": [], "post_v1_payments": [], "alpha_direct": []}
        for _ in range(opts.rounds):
            for name, fn in (("bare_drf_insert", bare), ("post_v1_payments", payment), ("alpha_direct", psp)):
                backends0 = backend_pids()
                pg0, busy0 = pids_cpu_s(backends0), machine_busy_s()
                alpha0 = process_tree_cpu_s(alpha.pid)
                cpu0, load0 = process_tree_cpu_s(gunicorn.pid), os.getloadavg()[0]
                own0 = time.process_time()
                run = drive(fn, opts.seconds)
                cpu = process_tree_cpu_s(gunicorn.pid) - cpu0
                pg1 = pids_cpu_s(backends0 | backend_pids())
                pg = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
                alpha_cpu, busy = process_tree_cpu_s(alpha.pid) - alpha0, machine_busy_s() - busy0
                run["loadavg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
                # the load generator's own CPU per request (is it the bottleneck?)
                client_cpu = run.pop("wrk_cpu_s", None)
                if client_cpu is None:
                    client_cpu = time.process_time() - own0
                run["client_cpu_ms_per_req"] = round(client_cpu * 1000 / run["ok"], 2) if run["ok"] else None
                if name != "alpha_direct":  # gunicorn's CPU per answered request (load-independent)
                    run["server_cpu_ms_per_req"] = round(cpu * 1000 / run["ok"], 2) if run["ok"] else None
                if run["ok"]:  # where the two cores go, per answered request
                    run["postgres_cpu_ms_per_req"] = round(pg * 1000 / run["ok"], 2)
                    run["alpha_cpu_ms_per_req"] = round(alpha_cpu * 1000 / run["ok"], 2)
                    run["machine_busy_cpu_ms_per_req"] = round(busy * 1000 / run["ok"], 2)
                rounds[name].append(run)
        results = {name: _median_run(runs) for name, runs in rounds.items()}
    finally:
        gunicorn.terminate()
        alpha.terminate()
        gunicorn.wait(60)  # a loaded machine may take longer than 10 s to stop 20 threads
        alpha.wait(10)
    pay, bare_r, psp_r = results["post_v1_payments"], results["bare_drf_insert"], results["alpha_direct"]
    summary = {
        "machine": {"cpus": os.cpu_count(), "gunicorn_workers": served["workers"], "threads": served["threads"],
                    "load_generator": opts.load_generator,
                    "clients": opts.clients, "seconds": opts.seconds, "rounds": opts.rounds,
                    "warmup_payments": warmup["ok"],
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        **results,
        "ratio_payments_to_bare_rps": pay["rps"] / bare_r["rps"] if bare_r["rps"] else None,
        "ratio_payments_to_bare_p50": pay["p50_ms"] / bare_r["p50_ms"] if bare_r["p50_ms"] else None,
        "gateway_overhead_p50_ms": pay["p50_ms"] - psp_r["p50_ms"],
        "goals": {
            "payments_per_s>=150": pay["rps"] >= 150,
            "overhead_p50<=15ms": pay["p50_ms"] - psp_r["p50_ms"] <= 15,
        },
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
