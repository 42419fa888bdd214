"""The embedded default's filesystem broker keeps all its files under PAYERA_VAR_DIR: kombu's
exchange table (`control_folder`) defaulted to ./control, relative to the working directory, so
`make run` and the tests left `control/celery*.exchange` in the checkout (two such files had even
been committed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "payera.settings.base"
django.setup()
from payera.celery import app
assert app.conf.broker_url == "filesystem://", app.conf.broker_url
app.send_task("payera.probe")  # binds the default exchange, as every enqueue does
print("ok")
"""


def test_the_filesystem_broker_writes_nothing_into_the_working_directory(tmp_path):
    var, cwd = tmp_path / "var", tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="ERROR",
        PAYERA_VAR_DIR=str(var),
        REDIS_URL="",
        DATABASE_URL=f"sqlite:///{var / 'db.sqlite3'}",
    )
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert list(cwd.iterdir()) == []
    assert (var / "broker" / "control" / "celery.exchange").exists()
