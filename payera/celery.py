import os

from celery import Celery
from celery.signals import worker_init

from payera.core.broker import harden_redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")

app = Celery("payera")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
harden_redis_transport()  # a Redis restart must not kill the worker (payera/core/broker.py)


@worker_init.connect
def _refuse_unsafe_runtime(**kwargs) -> None:
    """Production: a worker connecting as a superuser or owner database role does not start
    (payera/core/startup.py, docs/deploy.md "Database roles")."""
    from payera.core.startup import refuse_unsafe_runtime

    refuse_unsafe_runtime()
