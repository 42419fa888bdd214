"""The benchmarks still run. Each fills its own database by SQL against the current schema, which
a migration can break without any other test noticing (bench.backoffice and bench.reconcile both
were broken that way): here each runs at a tiny size and must finish and print its figures.
Nothing is timed; the figures are not looked at, only that they are there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.psp_adapters.sandbox_fixtures import REPO_ROOT

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    if connection.vendor != "postgresql":
        pytest.skip("the benchmarks run on PostgreSQL")
    env = dict(os.environ, LOG_LEVEL="ERROR")
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.mark.xdist_group("bench_smoke")
def test_the_backoffice_bench_fills_its_database_and_measures_every_page():
    out = run("bench.backoffice", "--payments", "1100")  # the list is measured at its page 20
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["payments"] == 1100
    assert {"list", "payment page", "search email"} <= set(summary)
    assert all(page["queries"] > 0 for name, page in summary.items() if isinstance(page, dict))


@pytest.mark.xdist_group("bench_smoke")
def test_the_reconciliation_bench_matches_its_whole_report_next_to_the_baseline():
    out = run("bench.reconcile", "--rows", "1000")
    assert "baseline  PostgreSQL COPY + one join" in out
    assert "(1,000 of 1,000 matched, discrepancies 0)" in out
    assert "'ok': True" in out  # the receivable ties out after the run
