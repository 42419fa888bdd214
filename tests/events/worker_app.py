"""Celery app for the test worker subprocess: Payera's app, on a queue of its own.

Each test session (each xdist worker too) uses its own queue name, so sessions sharing one Redis
database never run each other's tasks against the wrong test database.

Transactional tests flush the database between tests, and the flush re-creates the content
types with new ids; the worker outlives them, so it drops its content-type cache before each
task (an audit record would otherwise name a content type that no longer exists). Production
never flushes its content types.
"""

import os

from celery.signals import task_prerun

from payera.celery import app

_queue = os.environ.get("PAYERA_TEST_CELERY_QUEUE")
if _queue:
    app.conf.task_default_queue = _queue


@task_prerun.connect
def _fresh_content_types(**kwargs) -> None:
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()


__all__ = ["app"]
