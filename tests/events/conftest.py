"""Fixtures of the events tests: the local secrets backend, captured task publishing, a real Celery
worker (session) and real local HTTP endpoints."""

from __future__ import annotations

import pytest

from tests.events.receiver import Receiver
from tests.events.worker import WorkerProcess, route_to_queue, start_worker


def pytest_configure(config):
    # Registered here too, so runs with `-p no:xdist` (the embedded scenarios) still collect us.
    config.addinivalue_line("markers", "xdist_group(name): run in the same xdist worker")


@pytest.fixture(autouse=True)
def _shared_secrets(settings):
    # The real local backend: its wrapped data keys live in the test database, so the worker
    # process decrypts what this process encrypted.
    settings.SECRETS_BACKEND = "local"


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple[str, tuple, float | None]]:
    """Capture what would be published (task name, args, countdown) instead of publishing."""
    calls: list[tuple[str, tuple, float | None]] = []

    def fake(task, *args, countdown=None):
        calls.append((task.name.rsplit(".", 1)[-1], args, countdown))
        return True

    monkeypatch.setattr("payera.events.dispatch.enqueue", fake)
    return calls


@pytest.fixture
def receivers():
    """`receivers(statuses=[500, 500], delay=0)` makes a live local endpoint; closed at the end."""
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        receiver = Receiver(**kwargs)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, sandboxes) -> WorkerProcess:
    """A real `celery worker --pool=threads` on the test database, for the whole session. It
    reaches the session's sandbox PSPs (webhooks are hints it confirms by status inquiry); their
    credentials are in the shared local secrets backend once `psp_settings` ran."""
    from django.db import connection

    from payera.celery import app

    if connection.vendor != "postgresql" or not app.conf.broker_url.startswith("redis"):
        pytest.skip("the worker tests run on the served setup (PostgreSQL + Redis)")
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    worker = start_worker(settings_dict=settings_dict, extra_env={
        "SANDBOX_ALPHA_URL": sandboxes["alpha"].url, "SANDBOX_BETA_URL": sandboxes["beta"].url,
        "SANDBOX_DATA_DIR": str(sandboxes["alpha"].data_dir),
    })
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def celery_worker(celery_worker_process) -> WorkerProcess:
    """The session's worker, and this process publishing to its queue — for this test only: a
    later test's tasks must not reach a worker that runs them against the database while that
    test flushes it (deadlocks, changes no test asked for)."""
    from payera.celery import app

    saved_queue = app.conf.task_default_queue
    route_to_queue(app, celery_worker_process.queue)
    try:
        yield celery_worker_process
        # this test's tasks done before its teardown flushes the database under the worker
        celery_worker_process.wait_idle(app)
    finally:
        route_to_queue(app, saved_queue)
