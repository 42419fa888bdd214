"""Vault refuses a request as wrong (400: a bad path or value, a mount's check-and-set, a derived
key without its context): `SecretsRequestError`, in our words, never hvac's exception.

Before, only outages and 401/403 were mapped: a 400 came out as `hvac.exceptions.InvalidRequest`,
whose text is Vault's message plus "on post http://vault/v1/<mount>/data/payera/<path>", chained to
the calls that made it. Admin actions and commands catch `PayeraError` only, so the back office
answered 500 and `manage.py payout_settings` died with hvac's traceback. Against a real OpenBao
server."""

from __future__ import annotations

import io
import logging
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

from payera.secrets.backends.base import SecretsRequestError
from tests.fixtures.vault import vault_backend_for

SECRET = "psp-secret-value-8d1f"
PAN = b"4242424242424242"


def _kv_mount_with_check_and_set(bao) -> str:
    """A KV v2 mount of its own whose writes need check-and-set (a constraint an operator may set)."""
    mount = "kv-cas-" + uuid.uuid4().hex[:8]
    client = bao.client()
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    for _ in range(100):  # a new KV v2 mount upgrades itself for a moment
        try:
            client.secrets.kv.v2.configure(cas_required=True, mount_point=mount)
            return mount
        except Exception:  # noqa: BLE001 - retried until the mount is ready
            time.sleep(0.1)
    raise AssertionError("the KV mount never became ready")


def _assert_ours(error: SecretsRequestError, bao, *leaks: str) -> None:
    assert type(error) is SecretsRequestError and error.http_status == 500 and error.type == "api_error"
    assert error.code == "secrets_request_refused"
    assert error.__cause__ is None and error.__suppress_context__  # hvac's exception dropped
    for leak in (bao.addr, "/v1/", bao.root_token, *leaks):
        assert leak not in str(error)


def test_a_kv_write_vault_refuses_is_our_error_naming_the_path_never_the_value(bao, caplog):
    backend = vault_backend_for(bao, token=bao.root_token, kv_mount=_kv_mount_with_check_and_set(bao))
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretsRequestError) as info:
        backend.secret_put("psp/alpha", {"api_key": SECRET})
    _assert_ours(info.value, bao, SECRET)
    assert info.value.message.startswith(
        "The secrets service refused the kv_put request for 'psp/alpha': Vault answered 400"
    )
    assert SECRET not in caplog.text
    [logged] = [r for r in caplog.records if r.getMessage() == "vault: request refused"]
    assert (logged.operation, logged.error) == ("kv_put", "InvalidRequest")  # the class, never Vault's text


def test_an_encryption_vault_refuses_is_our_error_without_the_plaintext(bao, key_name, caplog):
    bao.client().secrets.transit.create_key(name=key_name, derived=True, mount_point="transit")  # needs a context
    backend = vault_backend_for(bao)
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretsRequestError) as info:
        backend.encrypt(key_name, PAN)
    _assert_ours(info.value, bao, PAN.decode())
    assert "encrypt request" in info.value.message and PAN.decode() not in caplog.text
    with pytest.raises(SecretsRequestError):  # and its encrypt + keyed hash, as a card's tokenization calls it
        backend.encrypt_and_hash(key_name, PAN, "fp-" + key_name, PAN)


@pytest.mark.django_db
def test_a_command_answers_a_vault_refusal_with_its_message_and_a_failure(bao_disposable, settings, monkeypatch):
    """`manage.py payout_settings` (the bank account is encrypted through Vault): a CommandError
    (exit status 1, one line), not hvac's traceback; nothing stored; the account never printed."""
    from reconciliation.models import MerchantPayoutSettings
    from reconciliation.services.payouts import BANK_ACCOUNT_KEY
    from tests.merchants.factories import MerchantFactory

    creds = bao_disposable.approles["payera"]
    settings.SECRETS_BACKEND = "vault"
    settings.VAULT_ADDR, settings.VAULT_TOKEN = bao_disposable.addr, ""
    settings.VAULT_ROLE_ID, settings.VAULT_SECRET_ID = creds.role_id, creds.secret_id
    bao_disposable.client().secrets.transit.create_key(name=BANK_ACCOUNT_KEY, derived=True, mount_point="transit")
    merchant = MerchantFactory()
    iban = "DE89370400440532013000"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{iban},Jane Doe\n"))
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("payout_settings", merchant.id, "--bank-account-stdin", stdout=out, stderr=out)
    message = str(info.value)
    assert message.startswith("The secrets service refused the encrypt request: Vault answered 400")
    assert iban not in message + out.getvalue() and bao_disposable.addr not in message
    stored = MerchantPayoutSettings.objects.filter(merchant_id=merchant.id).exclude(bank_account_ciphertext="")
    assert not stored.exists()


def test_a_vault_405_is_a_refused_request_not_an_outage(bao, caplog):
    """x16c: hvac 2.4 raises `UnexpectedError` for any status it has no class for (405, 412), and
    the backend counted that as an outage: a KV mount pointing at a path that does not take the
    operation (a misconfiguration) answered 503 "retry later" for ever, so clients retried it. A 405
    or 412 is now Vault refusing the request: `SecretsRequestError`, in our words."""
    backend = vault_backend_for(bao, token=bao.root_token, kv_mount="sys/leases/lookup")
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretsRequestError) as info:
        backend.secret_get("psp/alpha")
    _assert_ours(info.value, bao)
    assert "Vault answered 405" in info.value.message
