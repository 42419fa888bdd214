"""Management commands: create_merchant (contract output), api_key_create, api_key_revoke."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from payera.merchants.models import ApiKey, Merchant
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_merchant_json_prints_exactly_the_contract_shape_and_the_key_works():
    out = run("create_merchant", "Acme Shop", "--connectors", "beta,alpha", "--json")
    data = json.loads(out)
    assert list(data) == ["merchant", "api_key"]
    assert re.fullmatch(r"mer_[0-9A-Za-z]{24}", data["merchant"])
    assert re.fullmatch(r"sk_test_[0-9A-Za-z]{43}", data["api_key"])
    merchant = Merchant.objects.get(pk=data["merchant"])
    assert merchant.name == "Acme Shop"
    assert merchant.connectors == ["beta", "alpha"]  # routing order = --connectors order
    client = client_for(data["api_key"])
    assert client.get("/v1/customers").status_code == 200
    assert client.post("/v1/customers", {"name": "first"}, format="json").status_code == 201


def test_create_merchant_defaults_to_all_connectors():
    data = json.loads(run("create_merchant", "Default", "--json"))
    assert Merchant.objects.get(pk=data["merchant"]).connectors == ["alpha", "beta"]


def test_create_merchant_with_an_unknown_connector_fails_and_creates_nothing():
    with pytest.raises(CommandError, match="gamma"):
        run("create_merchant", "Bad", "--connectors", "alpha,gamma", "--json")
    assert not Merchant.objects.exists()


def test_api_key_create_and_revoke_commands(merchant):
    data = json.loads(run("api_key_create", merchant.id, "--scope", "read", "--expires-in-days", "30", "--json"))
    assert data["id"].startswith("key_") and data["merchant"] == merchant.id and data["scope"] == "read"
    client = client_for(data["api_key"])
    assert client.get("/v1/customers").status_code == 200
    assert client.post("/v1/customers", {}, format="json").status_code == 403
    revoked = json.loads(run("api_key_revoke", data["id"], "--json"))
    assert revoked["id"] == data["id"] and revoked["revoked"] is True
    assert ApiKey.objects.get(pk=data["id"]).revoked_at is not None
    assert client.get("/v1/customers").status_code == 401


def test_api_key_create_for_an_unknown_merchant_fails():
    with pytest.raises(CommandError):
        run("api_key_create", "mer_nope", "--json")


def test_merchant_suspend_command(merchant, api_key):
    suspended = json.loads(run("merchant_suspend", merchant.id, "--json"))
    assert suspended == {"merchant": merchant.id, "status": "suspended"}
    assert client_for(api_key.secret).get("/v1/customers").status_code == 401
    run("merchant_suspend", merchant.id, "--reactivate", "--json")
    assert client_for(api_key.secret).get("/v1/customers").status_code == 200


def test_create_merchant_with_an_unknown_fee_schedule_fails_and_creates_nothing():
    """A mistyped `--fee-schedule` (`zer0` for a merchant who negotiated `zero`) was stored as it
    was and exited 0: every capture then silently charged the `standard` fees (the fee lookup falls
    back to it). It is refused now, naming the schedules that exist."""
    with pytest.raises(CommandError, match="zer0.*standard"):
        run("create_merchant", "Typo", "--fee-schedule", "zer0", "--json")
    assert not Merchant.objects.exists()
    data = json.loads(run("create_merchant", "Zero", "--fee-schedule", "zero", "--json"))
    assert Merchant.objects.get(pk=data["merchant"]).fee_schedule == "zero"


@pytest.mark.parametrize("args", [["--name", "n" * 101], ["--expires-in-days", "99999999"]])
def test_api_key_create_with_a_bad_argument_is_a_clear_error_and_makes_no_key(merchant, args):
    """A name longer than the column (a database error) and an expiry past the calendar's end
    (OverflowError) ended in tracebacks."""
    with pytest.raises(CommandError):
        run("api_key_create", merchant.id, *args, "--json")
    assert not ApiKey.objects.filter(merchant=merchant).exclude(name="initial").exists()


@pytest.mark.parametrize("command", ["create_merchant", "api_key_create"])
def test_a_card_number_as_a_merchant_or_key_name_is_refused(merchant, command):
    """The merchant page refuses a card number in any field, but the commands stored one in clear
    as a merchant's or a key's name, then shown on every back-office page that names them."""
    pan = "4111 1111 1111 1111"
    args = ["create_merchant", pan] if command == "create_merchant" else ["api_key_create", merchant.id, "--name", pan]
    with pytest.raises(CommandError, match="card number") as refused:
        run(*args, "--json")
    assert pan not in str(refused.value) and "4111111111111111" not in str(refused.value)
    assert not Merchant.objects.filter(name__contains="4111").exists()
    assert not ApiKey.objects.filter(name__contains="4111").exists()
