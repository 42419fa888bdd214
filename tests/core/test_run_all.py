"""`make run` (manage.py run_all): one command starts web, worker, scheduler and both sandbox PSPs
on the embedded default, prints a working key, and Ctrl-C stops every process it started."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]



def children_of(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    tree: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        tree.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.mark.slow
def test_run_all_serves_the_api_and_stops_everything_on_ctrl_c(tmp_path):
    web, alpha, beta = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/payera.sqlite3",
        "REDIS_URL": "",
        "PAYERA_VAR_DIR": str(tmp_path),
        "SANDBOX_DATA_DIR": str(tmp_path / "sandbox"),
        "SANDBOX_ALPHA_URL": f"http://127.0.0.1:{alpha}",
        "SANDBOX_BETA_URL": f"http://127.0.0.1:{beta}",
        "SECRETS_BACKEND": "local",
        "DJANGO_SETTINGS_MODULE": "payera.settings.base",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_all", "--port", str(web)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{web}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        else:
            pytest.fail("make run never became ready")
        key = json.loads((tmp_path / "demo-merchant.json").read_text())
        assert key["merchant"].startswith("mer_") and key["api_key"].startswith("sk_test_")
        listed = httpx.get(
            f"http://127.0.0.1:{web}/v1/customers", headers={"Authorization": f"Bearer {key['api_key']}"}, timeout=5
        )
        assert listed.status_code == 200 and listed.json()["object"] == "list"
        assert httpx.get(f"http://127.0.0.1:{web}/v1/docs/", timeout=5).status_code == 200
        for port in (alpha, beta):  # the sandboxes answer (401 without their API key)
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code in (401, 404)
        started = children_of(proc.pid)
        assert len(started) >= 5  # web (+ its workers), worker, scheduler, alpha, beta
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    time.sleep(1)
    alive = [pid for pid in started if Path(f"/proc/{pid}").exists()]
    assert not alive, f"processes left running after Ctrl-C: {alive}"
