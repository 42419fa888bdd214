"""The ledger on the embedded default (SQLite), in a subprocess with its own fresh database."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_rules_hold_on_sqlite(tmp_path):
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/payera.sqlite3",
        REDIS_URL="",
        PAYERA_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="payera.settings.base",
        LOG_LEVEL="WARNING",
    )
    script = Path(__file__).with_name("sqlite_embedded_check.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
