"""One place the events app reads the time, so tests can move it (dead letters, pruning)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
