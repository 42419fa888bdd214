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
# workers and threads: gunicorn.conf.py (WEB_CONCURRENCY, WEB_THREADS; docs/deploy.md)
CMD ["gunicorn", "payera.wsgi:application", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
