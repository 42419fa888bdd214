"""`make run` prints the demo merchant's key and a `curl` line that must work: the key kept in
var/demo-merchant.json is shown again only while it still opens the API."""

from __future__ import annotations

import json
from io import StringIO

import pytest

from payera.core.management.commands.run_all import Command
from payera.merchants.models import ApiKey
from payera.merchants.selectors import api_key_find_by_secret
from payera.merchants.services import api_key_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def demo_key() -> dict:
    return Command(stdout=StringIO(), stderr=StringIO())._demo_key()


def usable(secret: str) -> bool:
    key = api_key_find_by_secret(raw_key=secret)
    return key is not None and key.revoked_at is None


def test_the_first_run_creates_the_demo_merchant_and_later_runs_show_the_same_key(var_dir):
    first = demo_key()
    assert usable(first["api_key"]) and demo_key() == first
    assert json.loads((var_dir / "demo-merchant.json").read_text()) == first


def test_a_kept_key_of_a_database_that_was_reset_is_replaced(var_dir):
    """The file outlived its database (var/payera.sqlite3 deleted to start afresh, or another
    DATABASE_URL): the key printed, and the curl line with it, answered 401."""
    stale = {"merchant": "mer_000000000000000000000000", "api_key": "sk_test_" + "x" * 43}
    (var_dir / "demo-merchant.json").write_text(json.dumps(stale))
    shown = demo_key()
    assert shown != stale and usable(shown["api_key"])
    assert json.loads((var_dir / "demo-merchant.json").read_text()) == shown


def test_a_revoked_demo_key_is_replaced_by_a_new_key_of_the_same_merchant(var_dir):
    first = demo_key()
    api_key_revoke(api_key_id=ApiKey.objects.get(merchant_id=first["merchant"]).pk)
    shown = demo_key()
    assert shown["merchant"] == first["merchant"] and shown["api_key"] != first["api_key"]
    assert usable(shown["api_key"])
