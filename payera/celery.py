import os

from celery import Celery

from payera.core.broker import harden_redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")

app = Celery("payera")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
harden_redis_transport()  # a Redis restart must not kill the worker (payera/core/broker.py)
