"""Load-and-consistency run: `python -m bench.load [--merchants 4] [--minutes 2] [--fault all]`.

Starts its own PostgreSQL cluster and redis-server on free loopback ports (the machine's shared
ones are never touched), migrates, then serves Payera as in production: gunicorn, two Celery
worker processes and beat, the two sandbox PSPs in chaos mode (5xx before processing, answers
held past the adapter's timeout after processing, duplicate and late webhooks). N merchants
(asyncio + httpx, alpha+beta connectors) make payments for M minutes — automatic and manual
capture, partial captures and refunds, cancels, declines, cascades, 3-D Secure left unfinished —
each POST with an Idempotency-Key, retried with the same key like a real merchant client.
Faults (`--fault pg-restart|redis-restart|worker-kill|all`, repeatable) strike mid-run.
Then: load stopped, chaos off, recovery and webhook sweeps until quiet, and the checker
(bench/load/checker.py) compares the sandboxes' view, the payments and the ledger to the cent.
Prints throughput, p50/p99 latency, error counts and "0 discrepancies" (exit 0) or each
discrepancy (exit 1). docs/reliability.md has the method and a run's output.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from bench.load import infra
from bench.load.driver import Driver, Merchant
from bench.payments.__main__ import percentile

FAULTS = ("pg-restart", "redis-restart", "worker-kill")
CHAOS = {"error_rate": 0.05, "timeout_rate": 0.03, "timeout_seconds": 2.5, "duplicate_webhook_rate": 0.2,
         "late_webhook_seconds": 2.0}

SETUP = """
import django, json, os, sys
django.setup()
from payera.secrets.services import secret_put
from payera.merchants.services import api_key_create
from payera.merchants.models import Merchant
for psp in ("alpha", "beta"):
    secret_put(f"psp/{psp}", {"api_key": os.environ[f"SANDBOX_{psp.upper()}_API_KEY"],
                              "webhook_secret": os.environ[f"SANDBOX_{psp.upper()}_WEBHOOK_SECRET"]})
out = []
for i in range(int(sys.argv[1])):
    connectors = ["alpha", "beta"] if i % 2 == 0 else ["beta", "alpha"]
    m = Merchant.objects.create(name=f"load merchant {i}", connectors=connectors)
    out.append({"id": str(m.id), "secret": api_key_create(merchant=m).secret})
print(json.dumps(out))
"""


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class Run:
    def __init__(self, opts: argparse.Namespace):
        self.opts = opts
        self.tmp = Path(tempfile.mkdtemp(prefix="payera-load-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.pg = infra.PrivatePostgres(self.tmp, fast=opts.fast_db)
        self.redis = infra.PrivateRedis(self.tmp)
        self.procs: dict[str, infra.Proc] = {}
        self.workers: list[infra.Proc] = []
        self.faults_done: list[str] = []
        self.timings: dict[str, float] = {}
        self.exited: dict[str, int] = {}
        self.sandbox_urls: dict[str, str] = {}
        self.port = infra.free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.load.settings", "DJANGO_ENV": "production", "DEBUG": "false",
            "SECRET_KEY": "load-" + uuid.uuid4().hex + uuid.uuid4().hex, "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false", "SECRETS_BACKEND": "local", "LOG_LEVEL": "WARNING",
            "LOCAL_MASTER_KEYS": "load1:" + base64.b64encode(os.urandom(32)).decode(),
            "API_RATE_LIMIT": "1000000/s", "PAYERA_VAR_DIR": str(self.tmp / "var"), "PORT": str(self.port),
            "PAYERA_PUBLIC_URL": f"http://127.0.0.1:{self.port}", "SANDBOX_DATA_DIR": str(self.tmp / "sandbox"),
            "SANDBOX_ALPHA_API_KEY": "alpha_load_" + uuid.uuid4().hex,
            "SANDBOX_ALPHA_WEBHOOK_SECRET": "alpha_whsec_" + uuid.uuid4().hex,
            "SANDBOX_BETA_API_KEY": "beta_load_" + uuid.uuid4().hex,
            "SANDBOX_BETA_WEBHOOK_SECRET": "beta_whsec_" + uuid.uuid4().hex,
            "PYTHONPATH": str(infra.ROOT), "DB_CONN_MAX_AGE": "60",
            "DATABASE_URL": self.pg.url, "REDIS_URL": self.redis.url, "CELERY_BROKER_URL": self.redis.url,
            "LOAD_PSP_READ_TIMEOUT": "1.5", "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "prom"),
        }
        (self.tmp / "var").mkdir()
        (self.tmp / "sandbox").mkdir()
        (self.tmp / "prom").mkdir()

    # --- bring-up ------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 300) -> str:
        return self.python("manage.py", *args, timeout=timeout)

    def python(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([infra.PY, *args], cwd=infra.ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def up(self) -> list[Merchant]:
        log(f"private PostgreSQL on :{self.pg.port}, redis on :{self.redis.port} (work dir {self.tmp})")
        self.pg.init()
        self.redis.start()
        base = f"http://127.0.0.1:{self.port}"
        for psp in ("alpha", "beta"):  # they need nothing of Payera's to start
            proc, url = infra.start_sandbox(psp, self.env, self.tmp / "sandbox", f"{base}/webhooks/psp/{psp}/",
                                            self.logs)
            self.procs[psp] = proc
            self.sandbox_urls[psp] = url
            self.env[f"SANDBOX_{psp.upper()}_URL"] = url
        self.chaos(CHAOS if not self.opts.no_chaos else {})
        log("PostgreSQL, redis and the sandboxes are up; migrating")
        self.manage("migrate", "-v0")
        # as in production (docs/deploy.md, "Database roles"): migrations as the owner, everything else
        # as a runtime role that owns nothing (production processes refuse to start as a superuser)
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute("CREATE ROLE payera_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        self.manage("db_grant_app_role", "payera_app")
        self.env["DATABASE_URL"] = self.pg.url.replace("://postgres@", "://payera_app@")
        log("migrated")
        # gunicorn and the workers boot while the merchants are created
        self.procs["gunicorn"] = infra.start_gunicorn(self.port, self.env, self.logs, workers=self.opts.web_workers)
        for n in (1, 2):
            self.workers.append(infra.start_worker(n, self.env, self.logs))
        self.procs["beat"] = infra.start_beat(self.env, self.logs)
        out = self.python("-c", SETUP, str(self.opts.merchants))
        merchants = [Merchant(**m) for m in json.loads(out.strip().splitlines()[-1])]
        infra.wait_healthy(self.procs["gunicorn"], self.port, self.logs)
        log(f"gunicorn on {base}, 2 workers + beat, sandboxes {self.sandbox_urls}, {len(merchants)} merchants")
        return merchants

    def sandbox_auth(self, psp: str) -> dict[str, str]:
        key = self.env[f"SANDBOX_{psp.upper()}_API_KEY"]
        return {"Authorization": f"Bearer {key}"} if psp == "alpha" else {"X-Api-Key": key}

    def chaos(self, chaos: dict) -> dict:
        counts = {}
        for psp, url in self.sandbox_urls.items():
            r = httpx.put(url + "/_sandbox/config", json={"chaos": chaos}, headers=self.sandbox_auth(psp), timeout=10)
            r.raise_for_status()
            counts[psp] = r.json()["chaos_counts"]
        return counts

    def down(self) -> None:
        log("stopping")
        for proc in [*self.workers, *self.procs.values()]:
            proc.popen.poll() is None and os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in [*self.workers, *self.procs.values()]:
            proc.kill()  # waits for the SIGTERM above (SIGKILL after 15 s)
        self.redis.stop()
        self.pg.stop()
        if not self.opts.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        log("stopped")

    # --- faults --------------------------------------------------------------------
    def fault(self, name: str) -> None:
        t0 = time.monotonic()
        if name == "pg-restart":
            self.pg.restart()
        elif name == "redis-restart":
            self.redis.stop()
            time.sleep(self.opts.redis_down)
            self.redis.start()
        elif name == "worker-kill":
            victim = self.workers.pop(0)
            os.killpg(victim.popen.pid, signal.SIGKILL)
            victim.popen.wait(10)
            self.workers.append(infra.start_worker(len(self.faults_done) + 3, self.env, self.logs))
        self.faults_done.append(f"{name} at +{self.fault_at[name]:.0f}s ({time.monotonic() - t0:.1f}s)")
        log(f"fault {name} done in {time.monotonic() - t0:.1f}s")

    async def faults(self, names: list[str], seconds: float) -> None:
        """The faults spread evenly over the load (with one: in the middle)."""
        self.fault_at = {}
        started = time.monotonic()
        for i, name in enumerate(names):
            at = seconds * (i + 1) / (len(names) + 1)
            await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
            self.fault_at[name] = time.monotonic() - started
            await asyncio.to_thread(self.fault, name)

    # --- the run -------------------------------------------------------------------
    async def load(self, merchants: list[Merchant]) -> tuple[Driver, float]:
        driver = Driver(f"http://127.0.0.1:{self.port}", merchants, shoppers=self.opts.shoppers,
                        seed=self.opts.seed)
        seconds = self.opts.minutes * 60
        faults = asyncio.create_task(self.faults(self.opts.faults, seconds))
        started = time.monotonic()
        self.timings["drain"] = await driver.run(seconds)
        await faults
        return driver, time.monotonic() - started - self.timings["drain"]

    def check(self, driver: Driver) -> dict:
        """Recovery until quiet, then the checker (one Django process: bench/load/checker.py)."""
        time.sleep(max(0.0, 4 - self.timings["drain"]))  # past PAYMENTS_STARTED_GRACE_SECONDS
        path = self.tmp / "driver.json"
        path.write_text(json.dumps(driver.record()))
        out = self.python("-m", "bench.load.checker", str(path), timeout=900)
        return json.loads(out.strip().splitlines()[-1])


def report(opts, run: Run, driver: Driver, elapsed: float, chaos_counts: dict, result: dict) -> str:
    st = driver.stats
    lat = st.latencies
    rounds = result["recovery_rounds"]
    lines = [
        f"load run: {opts.merchants} merchants x {opts.shoppers} shoppers, {elapsed:.0f}s of load, "
        f"{os.cpu_count()} cores, gunicorn {opts.web_workers} workers x 4 threads, 2 Celery workers + beat",
        f"  faults: {', '.join(run.faults_done) or 'none'}",
        f"  sandbox chaos: {json.dumps(CHAOS if not opts.no_chaos else {})}",
        f"  injected: {json.dumps(chaos_counts, sort_keys=True)}",
        f"  payments created: {len(driver.payments)} ({len(driver.payments) / elapsed:.1f}/s); "
        f"HTTP requests answered: {len(lat)} ({len(lat) / (elapsed + run.timings['drain']):.1f}/s)",
        f"  latency of answered requests: p50 {percentile(lat, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(lat, 0.99) * 1000:.0f} ms; "
        + ", ".join(f"{op} p50 {percentile(v, 0.5) * 1000:.0f} / p99 {percentile(v, 0.99) * 1000:.0f} ms"
                    for op, v in sorted(st.by_op.items())),
        f"  retried (merchant side): {json.dumps(dict(sorted(st.errors.items())))}; gave up: {st.gave_up}",
        f"  answers: {json.dumps(dict(sorted(st.operations.items())))}",
        f"  final statuses seen by the driver: {json.dumps(dict(sorted(st.statuses.items())))}",
        f"  after the load: {run.timings['drain']:.0f}s until every shopper finished; {len(rounds)} recovery "
        f"rounds (first: {json.dumps(rounds[0] if rounds else {})})",
        f"  phases: setup {run.timings['setup']:.0f}s, recovery + check {run.timings['check']:.0f}s",
        f"  checked: {json.dumps(result['facts'], sort_keys=True)}",
    ]
    lines.append("  processes: " + (", ".join(f"{n} EXITED ({rc})" for n, rc in run.exited.items())
                                      or "gunicorn, every worker, beat and both PSPs alive at the end of the load"))
    problems = result["discrepancies"] + [f"process {n} exited ({rc}) during the run" for n, rc in run.exited.items()]
    if problems:
        lines.append(f"{len(problems)} discrepancies:")
        lines += [f"  - {p}" for p in problems]
    else:
        lines.append("0 discrepancies")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--merchants", type=int, default=4)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=None, help="load duration in seconds (overrides --minutes)")
    p.add_argument("--shoppers", type=int, default=3, help="concurrent shoppers per merchant")
    p.add_argument("--web-workers", type=int, default=3)
    p.add_argument("--fault", action="append", default=[], choices=[*FAULTS, "all"])
    p.add_argument("--redis-down", type=float, default=10.0, help="seconds redis stays stopped")
    p.add_argument("--no-chaos", action="store_true", help="sandboxes behave (no injected PSP failures)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fast-db", action="store_true",
                   help="PostgreSQL with fsync off (the short CI run; refused with pg-restart)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, data) afterwards")
    opts = p.parse_args(argv)
    if opts.seconds is not None:
        opts.minutes = opts.seconds / 60
    opts.faults = list(FAULTS) if "all" in opts.fault else list(dict.fromkeys(opts.fault))
    if opts.fast_db and "pg-restart" in opts.faults:
        p.error("--fast-db turns fsync off: a PostgreSQL restart could then lose commits; not with pg-restart")
    run = Run(opts)

    def terminate(signum, frame):  # SIGTERM (e.g. a CI timeout): stop everything we started, then exit
        log("SIGTERM: stopping everything this run started")
        run.down()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        t0 = time.monotonic()
        merchants = run.up()
        run.timings["setup"] = time.monotonic() - t0
        log(f"load for {opts.minutes * 60:.0f}s, faults {opts.faults or 'none'}")
        driver, elapsed = asyncio.run(run.load(merchants))
        chaos_counts = run.chaos({})
        run.exited = {p.name: p.popen.returncode for p in [*run.workers, *run.procs.values()]
                      if p.popen.poll() is not None}
        log("load stopped, chaos off; recovery and webhook sweeps until quiet, then the checker")
        t0 = time.monotonic()
        result = run.check(driver)
        run.timings["check"] = time.monotonic() - t0
    finally:
        run.down()
    print(report(opts, run, driver, elapsed, chaos_counts, result))  # noqa: T201
    return 1 if result["discrepancies"] or run.exited else 0


if __name__ == "__main__":
    raise SystemExit(main())
