"""PostgreSQL binds the parameters and prepares the statements a connection runs again
(docs/decisions/server-side-binding.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from payera.merchants.models import Merchant

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


@pytest.mark.django_db
def test_a_statement_run_again_is_prepared_and_its_values_are_bound_by_the_server():
    merchant = Merchant.objects.create(name="prepared")
    for _ in range(6):  # the threshold is 5
        assert Merchant.objects.filter(id=merchant.id).values_list("name", flat=True).get() == "prepared"
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, parameter_types::text FROM pg_prepared_statements"
                       " WHERE statement LIKE %s", ['%"merchants_merchant"."name"%'])
        prepared = cursor.fetchall()
    assert prepared, "the repeated SELECT was not prepared"
    statement, types = prepared[0]
    assert "$1" in statement and merchant.id not in statement  # bound, not quoted into the text


def _options(**env) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings; "
            "print(json.dumps(settings.DATABASES['default']['OPTIONS']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "payera.settings.base",
                              "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused", **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_settings_turn_it_on_by_default_and_off_for_a_pooler():
    # (isolation_level 2: READ COMMITTED, pinned: tests/core/test_isolation_level.py)
    assert _options() == {"server_side_binding": True, "prepare_threshold": 5, "isolation_level": 2}
    assert _options(DB_PREPARE_THRESHOLD="off", DB_SERVER_SIDE_BINDING="false") == {
        "server_side_binding": False, "prepare_threshold": None, "isolation_level": 2}
    assert _options(DB_PREPARE_THRESHOLD="1")["prepare_threshold"] == 1
