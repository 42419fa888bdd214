"""Celery app for the test worker subprocess: Payera's app, on a queue of its own.

Each test session (each xdist worker too) uses its own queue name, so sessions sharing one Redis
database never run each other's tasks against the wrong test database.
"""

import os

from payera.celery import app

_queue = os.environ.get("PAYERA_TEST_CELERY_QUEUE")
if _queue:
    app.conf.task_default_queue = _queue

__all__ = ["app"]
