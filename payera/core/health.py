"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its dependencies do)."""

from __future__ import annotations

import logging

from django.db import connections
from django.http import JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def check_database() -> str | None:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready
        return f"database unreachable ({type(exc).__name__})"
    return None


def check_broker() -> str | None:
    from payera.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"broker unreachable ({type(exc).__name__})"
    return None


@require_GET
def readyz(request):
    checks = {"database": check_database(), "broker": check_broker()}
    failed = {name: reason for name, reason in checks.items() if reason}
    if failed:
        logger.warning("not ready", extra={"failed_checks": failed})
        return JsonResponse({"status": "unavailable", "checks": {k: v or "ok" for k, v in checks.items()}}, status=503)
    return JsonResponse({"status": "ok", "checks": dict.fromkeys(checks, "ok")})


