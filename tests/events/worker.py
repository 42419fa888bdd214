"""A real Celery worker subprocess against the pytest-django test database (reusable).

Use the `celery_worker` fixture (tests/events/conftest.py) with
`@pytest.mark.django_db(transaction=True)`, so the worker sees committed rows. How it works:
- after `django_db_setup` created the test database, the worker gets a DATABASE_URL naming it
  (e.g. `test_payera_events`, or `..._gw0` under xdist);
- it runs `python -m celery -A tests.events.worker_app worker --pool=threads` on a queue unique
  to this session, and this process publishes to that queue too (`route_to_queue`);
- it shares the signing keys through `SharedTestBackend` (the memory backend is per process);
- `extra_env` sets worker-only settings (short backoffs...); it is stopped by its pid at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]

# Worker-side settings for fast tests (env vars read at the end of payera/settings/base.py).
FAST_ENV = {
    "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WEBHOOK_RETRY_MAX_SECONDS": "1",
    "WEBHOOK_RETRY_JITTER": "0.1",
    "WEBHOOK_CONNECT_TIMEOUT_SECONDS": "2",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
    "WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT": "2",
    "WEBHOOK_CONCURRENCY_RETRY_SECONDS": "0.3",
    "EVENTS_RELAY_SWEEP_MIN_AGE_SECONDS": "0",
}


@dataclass
class WorkerProcess:
    pid: int
    queue: str
    log_path: Path
    popen: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_idle(self, app, *, timeout: float = 20.0) -> bool:
        """Until the worker holds no task (running, prefetched or waiting for its countdown) in two
        answers in a row: a test's deliveries and retries may still write after the test saw what
        it waited for, and its teardown's flush (TRUNCATE) deadlocks with such a write. False when
        the worker did not go idle (or did not answer) in time."""
        name = f"{self.queue}@{socket.gethostname()}"
        deadline, quiet = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            inspect = app.control.inspect(destination=[name], timeout=1.0)
            answers = [inspect.active(), inspect.reserved(), inspect.scheduled()]
            if all(answer is not None and not answer.get(name) for answer in answers):
                quiet += 1
                if quiet == 2:
                    return True
            else:
                quiet = 0
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5)


def database_url(settings_dict: dict) -> str:
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def route_to_queue(app, queue: str) -> None:
    """Make this process publish to `queue` (Celery caches its queue and router objects)."""
    app.conf.task_default_queue = queue
    for cached in ("queues", "default_queue", "router"):
        app.amqp.__dict__.pop(cached, None)


def start_worker(*, settings_dict: dict, extra_env: dict | None = None, concurrency: int = 8,
                 beat: bool = False) -> WorkerProcess:
    """`beat=True` embeds the scheduler (`-B`), so the real beat schedule drives the sweeps."""
    queue = f"payera-test-{uuid.uuid4().hex[:10]}"
    log_path = Path(tempfile.mkdtemp(prefix="payera-worker-")) / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "payera.settings.test",
        "DATABASE_URL": database_url(settings_dict),
        "DB_CONN_MAX_AGE": "0",
        "SECRETS_BACKEND": "local",  # the real backend: keys live in the shared test database
        "PAYERA_TEST_CELERY_QUEUE": queue,
        "LOG_JSON": "false",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **FAST_ENV,
        **(extra_env or {}),
    }
    cmd = [
        sys.executable, "-m", "celery", "-A", "tests.events.worker_app", "worker",
        "--pool=threads", f"--concurrency={concurrency}", "-Q", queue, "-n", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
    ]  # fmt: skip
    if beat:
        cmd += ["-B", "-s", str(log_path.parent / "beat-schedule")]
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = WorkerProcess(pid=popen.pid, queue=queue, log_path=log_path, popen=popen)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"celery worker exited with {popen.returncode}:\n{worker.log()}")
        if " ready." in worker.log():
            return worker
        time.sleep(0.1)
    worker.stop()
    raise RuntimeError(f"celery worker did not become ready:\n{worker.log()}")


@contextmanager
def broker_unreachable(app):
    """Point this process's publishing at a closed port (the broker is 'down' for the write)."""
    saved = app.conf.broker_write_url

    def reset() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    reset()
    try:
        yield
    finally:
        app.conf.broker_write_url = saved
        reset()
