"""`manage.py secrets_rotate_key KEY`: an operator rotates an application key (e.g. the shared
`payments-card-number` or `payments-iban` key after a suspected exposure) and data encrypted
before stays readable. Against a real OpenBao server (Vault backend) and the local backend.

What was wrong: docs/secrets.md promised rotation with lazy re-encryption, but nothing let an
operator rotate a key: no command, no admin action — only a Django shell on a production host,
in an incident. Now one command rotates and prints the new version; a Vault that is down or
sealed is a clear error (exit 1, no traceback, no secret)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from payera.secrets import services as secrets
from tests.fixtures.vault import use_vault

PAN = b"4242424242424242"


def _rotate(key: str) -> dict:
    out = StringIO()
    call_command("secrets_rotate_key", key, stdout=out)
    return json.loads(out.getvalue())


def _rotation_keeps_old_data_readable(key: str) -> None:
    old = secrets.encrypt(key=key, plaintext=PAN)
    assert _rotate(key) == {"key": key, "version": 2}
    assert secrets.decrypt(key=key, ciphertext=old) == PAN  # old data stays readable
    new = secrets.encrypt(key=key, plaintext=PAN)
    assert secrets.get_backend().ciphertext_version(new) == 2
    plain, fresh = secrets.decrypt_refresh(key=key, ciphertext=old)  # and moves forward as it is read
    assert plain == PAN and fresh is not None and secrets.get_backend().ciphertext_version(fresh) == 2


def test_rotating_a_vault_key_keeps_old_ciphertexts_readable(bao, settings, key_name):
    use_vault(settings, bao)
    _rotation_keeps_old_data_readable(key_name)


@pytest.mark.django_db
def test_rotating_a_local_key_keeps_old_ciphertexts_readable(settings, key_name):
    settings.SECRETS_BACKEND = "local"
    _rotation_keeps_old_data_readable(key_name)


def test_a_vault_that_is_down_is_a_clear_error_without_a_secret(bao_disposable, settings, key_name):
    use_vault(settings, bao_disposable)
    bao_disposable.stop()
    with pytest.raises(CommandError) as info:
        _rotate(key_name)
    assert "unavailable" in str(info.value)
    assert bao_disposable.approles["payera"].secret_id not in str(info.value)


@pytest.mark.parametrize("bad", ["Bad Key", "x" * 64, "../kv"])
def test_a_bad_key_name_is_a_clear_error(settings, bad):
    settings.SECRETS_BACKEND = "memory"
    with pytest.raises(CommandError, match="1-63 characters"):
        _rotate(bad)


def _unknown_key_refused(key: str) -> None:
    with pytest.raises(CommandError, match="No key named") as refused:
        _rotate(key)
    assert secrets.get_backend().key_version_latest(key) == 0  # nothing created
    assert key in str(refused.value)


def test_a_mistyped_vault_key_is_refused_not_created(bao, settings, key_name):
    """What was wrong (r18c): rotating a key that does not exist (a typo, or a shredded key) created it
    at version 1 and answered as if the key had been rotated: the operator believed the exposed key
    rotated while the real one kept its old version."""
    use_vault(settings, bao)
    _unknown_key_refused(key_name)


@pytest.mark.django_db
def test_a_mistyped_local_key_is_refused_not_created(settings, key_name):
    settings.SECRETS_BACKEND = "local"
    _unknown_key_refused(key_name)
