"""/metrics under real gunicorn with two workers: multiprocess mode sums every worker's counters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db



def test_two_gunicorn_workers_one_sum(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("runs on the served setup")
    db = connection.settings_dict
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="payera.settings.base",
        METRICS_TOKEN="gunicorn-test-token",
        LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "payera.wsgi:application", "--workers", "2", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                # A long read timeout: a poll given up by the client while the server still
                # answers it would be counted there and not here (seen on a loaded machine).
                if httpx.get(f"{base}/healthz", timeout=httpx.Timeout(60, connect=2)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.3)
        for _ in range(19):  # 20 healthz in all, spread over the workers by the kernel
            assert httpx.get(f"{base}/healthz", timeout=60).status_code == 200
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 404  # the token is required
        body = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer gunicorn-test-token"}, timeout=5).text
        line = next(
            x for x in body.splitlines() if x.startswith('django_http_responses_total_by_status_total{status="200"}')
        )
        assert float(line.split()[1]) == 20.0
        assert "payera_webhook_backlog" in body
        assert len(list(tmp_path.glob("counter_*.db"))) >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
