"""What a bench that fills its own database needs before Django starts (bench.backoffice,
bench.balance_pages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-qAt", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql], check=True, capture_output=True
    )


def django_on_own_database(db: str, *, keep: bool) -> None:
    """Point Django at the bench's database `db` (dropped and created again unless `keep`) and set
    it up; the caller migrates and fills a new one."""
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
    sys.path.insert(0, str(ROOT))
    if not keep:
        psql(f"DROP DATABASE IF EXISTS {db}")
        psql(f"CREATE DATABASE {db}")
    import django

    django.setup()
