"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its dependencies do)."""

from __future__ import annotations

import logging

from django.db import connections
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)

_liveness = inline_serializer("Liveness", {"status": serializers.CharField()})
_health = inline_serializer("Health", {"status": serializers.CharField(), "checks": serializers.DictField()})


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


class HealthzApi(APIView):
    """The process is up. Checks nothing else, so a slow database never restarts web pods."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(responses=_liveness, tags=["operations"])
    def get(self, request):
        return Response({"status": "ok"})


class ReadyzApi(APIView):
    """Ready to serve: the database answers and the task broker accepts connections."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(responses={200: _health, 503: _health}, tags=["operations"])
    def get(self, request):
        checks = {"database": check_database(), "broker": check_broker()}
        failed = {name: reason for name, reason in checks.items() if reason}
        body = {"status": "unavailable" if failed else "ok", "checks": {k: v or "ok" for k, v in checks.items()}}
        if failed:
            logger.warning("not ready", extra={"failed_checks": failed})
        return Response(body, status=503 if failed else 200)


healthz = HealthzApi.as_view()
readyz = ReadyzApi.as_view()
