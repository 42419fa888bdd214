"""/healthz says the process is up; /readyz says whether its dependencies answer.

The unreachable cases run the real app in a subprocess pointed at closed ports: nothing is mocked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "payera.settings.base"
django.setup()
from django.test import Client
r = Client().get("/readyz")
print(json.dumps({"status": r.status_code, "body": r.json()}))
"""


def probe(**env_overrides) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOG_LEVEL="ERROR", **env_overrides)
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_ready_when_database_and_broker_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_not_ready_when_database_unreachable():
    result = probe(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/test",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    assert result["status"] == 503
    assert result["body"]["status"] == "unavailable"
    assert result["body"]["checks"]["database"].startswith("database unreachable")
    assert result["body"]["checks"]["broker"] == "ok"


@pytest.mark.django_db
def test_not_ready_when_broker_unreachable():
    from django.db import connection

    from tests.events.worker import database_url

    result = probe(
        # this run's own test database: it exists whatever DATABASE_URL names
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert result["status"] == 503
    assert result["body"]["checks"]["broker"].startswith("broker unreachable")
    assert result["body"]["checks"]["database"] == "ok"


def test_healthz_needs_nothing_but_the_process():
    env_db = f"postgres://postgres@127.0.0.1:{free_port()}/test"
    code = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE']='payera.settings.base'; django.setup();"
        "from django.test import Client; r = Client().get('/healthz'); print(r.status_code, r.json())"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), DATABASE_URL=env_db)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "200 {'status': 'ok'}", out.stderr
