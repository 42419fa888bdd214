import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")

app = Celery("payera")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
