# Payera, the served setup: one image for web (gunicorn), worker and scheduler (Celery).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 10001 payera
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_SETTINGS_MODULE=payera.settings.base python manage.py collectstatic --noinput \
    && chown -R payera /app/var
USER payera
EXPOSE 8000
# DATABASE_URL: the runtime database role for web/worker/scheduler (no superuser, owns nothing); the
# owner only for `migrate` + `db_grant_app_role` (docs/deploy.md, "Database roles"). In production
# (DJANGO_ENV=production) web and workers refuse to start as a superuser or owner (ledger.E101/E102).
# workers and threads: gunicorn.conf.py (WEB_CONCURRENCY, WEB_THREADS; docs/deploy.md)
CMD ["gunicorn", "payera.wsgi:application", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
