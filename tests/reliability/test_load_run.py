"""The short CI variant of the load-and-consistency run (bench/load, docs/reliability.md): one
merchant for 12 s against gunicorn, two real Celery workers and beat, both sandbox PSPs in chaos
mode (5xx, answers past the timeout, duplicate and late webhooks), one Celery worker SIGKILLed
mid-run; then recovery until quiet and the checker (PSPs vs payments vs ledger, to the cent,
ledger_verify, nothing open without reason, one effect per key). Its own PostgreSQL cluster and
redis-server: nothing shared is touched. About 45 s on an idle 2-core machine."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("load_run"),
    pytest.mark.skipif(shutil.which("redis-server") is None or not list(Path("/usr/lib/postgresql").glob("*/bin")),
                       reason="needs redis-server and the PostgreSQL server binaries (initdb, pg_ctl)"),
]


def test_short_load_run_with_a_worker_killed_has_no_discrepancy():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--merchants", "1", "--seconds", "12", "--shoppers", "3",
         "--fault", "worker-kill", "--fast-db", "--web-workers", "2", "--seed", "10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the run stops its PostgreSQL, redis and processes first
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"the load run did not finish in 240 s:\n{stdout}\n{stderr[-4000:]}")
    report = stdout + "\n" + stderr[-4000:]
    assert proc.returncode == 0, report
    assert "\n0 discrepancies" in stdout, report
    assert "faults: worker-kill at" in stdout, report
    created = int(re.search(r"payments created: (\d+)", stdout).group(1))
    assert created >= 5, report  # it did run load
    checked = re.search(r'"payments": (\d+)', stdout)
    assert checked and int(checked.group(1)) >= created, report
