"""The start and the report of the sqlite_*_check.py scripts, which run_on_fresh_sqlite
(tests/ledger/conftest.py) runs as `python -m tests.ledger.<script>` in a subprocess on a fresh
SQLite file (the embedded default)."""

import os
import traceback

import django


def setup(*, migrate: bool = True) -> None:
    """Django on the subprocess's database, which must be SQLite; migrated, unless `migrate` is false
    (a script that builds an older schema first)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    assert connection.vendor == "sqlite", connection.vendor
    if migrate:
        call_command("migrate", verbosity=0)


def outcome(case) -> str:
    """Run one case of a script that reports each on its own: "ok", or the end of its traceback."""
    try:
        case()
    except Exception:
        return traceback.format_exc()[-1500:]
    return "ok"
