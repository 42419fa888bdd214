"""What only the local backend has: master keys from the environment, wrapped data keys in the
database, lazy re-encryption of its own rows, no plaintext at rest."""

import base64
import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from payera.secrets.backends.base import CiphertextInvalidError, SecretsUnavailableError
from payera.secrets.backends.local import (
    DEV_MASTER_KEY_ID,
    KV_KEY,
    LocalBackend,
    new_master_key_entry,
    parse_master_keys,
)
from payera.secrets.models import DataKey, StoredSecret

PAN = b"4242424242424242"
pytestmark = pytest.mark.django_db


def test_ciphertext_names_key_and_version(key_name):
    ciphertext = LocalBackend(master_keys=new_master_key_entry("m1")).encrypt(key_name, PAN)
    prefix, name, version, payload = ciphertext.split(":")
    assert (prefix, name, version) == ("local", key_name, "v1")
    assert PAN not in base64.urlsafe_b64decode(payload + "==")


def test_data_keys_are_stored_wrapped_and_bound_to_name_and_version(key_name):
    backend = LocalBackend(master_keys=new_master_key_entry("m1"))
    ciphertext = backend.encrypt(key_name, PAN)
    backend.rotate_key(key_name)
    v1, v2 = DataKey.objects.filter(name=key_name).order_by("version")
    assert v1.master_key_id == "m1" and len(bytes(v1.wrapped_key)) == 12 + 32 + 16
    # Swap the wrapped key material of v2 into v1: authentication of the wrap fails closed.
    DataKey.objects.filter(pk=v1.pk).update(wrapped_key=bytes(v2.wrapped_key))
    with pytest.raises(SecretsUnavailableError):
        backend.decrypt(key_name, ciphertext)


def test_kv_values_are_encrypted_at_rest_and_bound_to_their_path(kv_path):
    backend = LocalBackend(master_keys=new_master_key_entry("m1"))
    backend.secret_put(kv_path, {"api_key": "psp-live-secret"})
    backend.secret_put(kv_path + "-2", {"api_key": "other"})
    row = StoredSecret.objects.get(path=kv_path)
    assert "psp-live-secret" not in row.ciphertext
    # A value moved to another path does not decrypt there.
    StoredSecret.objects.filter(path=kv_path + "-2").update(ciphertext=row.ciphertext)
    with pytest.raises(CiphertextInvalidError) as info:
        backend.secret_get(kv_path + "-2")
    assert "psp-live-secret" not in str(info.value)


def test_public_api_can_not_decrypt_kv_values(kv_path):
    backend = LocalBackend(master_keys=new_master_key_entry("m1"))
    backend.secret_put(kv_path, {"api_key": "x"})
    with pytest.raises(ValueError):
        backend.decrypt(KV_KEY, StoredSecret.objects.get(path=kv_path).ciphertext)


def test_kv_values_are_re_encrypted_lazily_after_rotation(kv_path):
    backend = LocalBackend(master_keys=new_master_key_entry("m1"))
    backend.secret_put(kv_path, {"api_key": "x"})
    assert ":v1:" in StoredSecret.objects.get(path=kv_path).ciphertext
    backend.rotate_kv_key()
    assert ":v1:" in StoredSecret.objects.get(path=kv_path).ciphertext  # nothing rewritten yet
    assert backend.secret_get(kv_path) == {"api_key": "x"}
    assert ":v2:" in StoredSecret.objects.get(path=kv_path).ciphertext


def test_master_key_rotation_rewraps_data_keys_lazily_then_old_master_can_go(key_name):
    old_entry, new_entry = new_master_key_entry("m1"), new_master_key_entry("m2")
    ciphertext = LocalBackend(master_keys=old_entry).encrypt(key_name, PAN)
    rotated = LocalBackend(master_keys=f"{new_entry},{old_entry}")
    assert rotated.decrypt(key_name, ciphertext) == PAN
    assert DataKey.objects.get(name=key_name).master_key_id == "m2"
    assert LocalBackend(master_keys=new_entry).decrypt(key_name, ciphertext) == PAN


def test_rewrap_data_keys_moves_everything_to_the_current_master(key_name):
    old_entry, new_entry = new_master_key_entry("m1"), new_master_key_entry("m2")
    LocalBackend(master_keys=old_entry).encrypt(key_name, PAN)
    LocalBackend(master_keys=old_entry).rotate_key(key_name)
    assert LocalBackend(master_keys=f"{new_entry},{old_entry}").rewrap_data_keys() == 2
    assert set(DataKey.objects.filter(name=key_name).values_list("master_key_id", flat=True)) == {"m2"}


def test_unknown_master_key_fails_closed(key_name):
    ciphertext = LocalBackend(master_keys=new_master_key_entry("m1")).encrypt(key_name, PAN)
    with pytest.raises(SecretsUnavailableError):
        LocalBackend(master_keys=new_master_key_entry("m9")).decrypt(key_name, ciphertext)


def test_concurrent_first_use_creates_one_version(key_name):
    a = LocalBackend(master_keys=new_master_key_entry("m1"))
    a.encrypt(key_name, PAN)
    assert a._create_version(key_name, 1) is None  # the unique (name, version) holds
    assert DataKey.objects.filter(name=key_name).count() == 1


class TestMasterKeyConfiguration:
    def test_dev_default_outside_production_only(self):
        assert parse_master_keys("", production=False)[0] == DEV_MASTER_KEY_ID
        with pytest.raises(ImproperlyConfigured):
            parse_master_keys("", production=True)

    def test_dev_key_refused_in_production(self):
        from payera.secrets.backends.local import DEV_MASTER_KEY

        entry = "x:" + base64.urlsafe_b64encode(DEV_MASTER_KEY).decode()
        with pytest.raises(ImproperlyConfigured):
            parse_master_keys(entry, production=True)

    @pytest.mark.parametrize("raw", ["nokey", "a:short", "a:" + "!" * 43, "a:{k},a:{k}", "bad id:{k}"])
    def test_malformed_entries_are_refused_without_echoing_key_material(self, raw):
        key = new_master_key_entry("z").split(":", 1)[1]
        raw = raw.format(k=key)
        with pytest.raises(ImproperlyConfigured) as info:
            parse_master_keys(raw, production=False)
        assert key not in str(info.value) and "short" not in str(info.value)

    def test_first_entry_wraps_and_all_unwrap(self):
        current, keys = parse_master_keys(f"{new_master_key_entry('b')}, {new_master_key_entry('a')}", production=True)
        assert current == "b" and set(keys) == {"a", "b"} and all(len(k) == 32 for k in keys.values())

    def test_settings_key_is_used_by_default(self, settings, key_name):
        settings.LOCAL_MASTER_KEYS = new_master_key_entry("fromenv")
        LocalBackend().encrypt(key_name, b"x")
        assert DataKey.objects.get(name=key_name).master_key_id == "fromenv"


def test_facade_uses_the_configured_backend(settings, key_name, kv_path):
    from payera.secrets import services

    settings.SECRETS_BACKEND = "local"
    settings.LOCAL_MASTER_KEYS = new_master_key_entry("m1")
    ciphertext = services.encrypt(key=key_name, plaintext=PAN)
    assert services.decrypt(key=key_name, ciphertext=ciphertext) == PAN
    services.rotate_key(key=key_name)
    plaintext, fresh = services.decrypt_refresh(key=key_name, ciphertext=ciphertext)
    assert plaintext == PAN and ":v2:" in fresh
    services.secret_put(kv_path, {"a": "b"})
    assert services.secret_get(kv_path) == {"a": "b"}
    assert json.dumps(services.keyed_hash(key=key_name, data=PAN))
    services.key_delete_material(key=key_name)
    with pytest.raises(services.KeyNotFoundError):
        services.decrypt(key=key_name, ciphertext=ciphertext)


class TestSystemChecks:
    def test_production_without_master_key_fails_the_check(self, settings):
        from payera.secrets.checks import check_secrets_backend

        settings.SECRETS_BACKEND, settings.PRODUCTION, settings.LOCAL_MASTER_KEYS = "local", True, ""
        assert [e.id for e in check_secrets_backend()] == ["payera.secrets.E001"]
        settings.LOCAL_MASTER_KEYS = new_master_key_entry("m1")
        assert check_secrets_backend() == []

    def test_vault_without_credentials_fails_the_check(self, settings):
        from payera.secrets.checks import check_secrets_backend

        settings.SECRETS_BACKEND, settings.VAULT_ADDR = "vault", ""
        settings.VAULT_TOKEN = settings.VAULT_ROLE_ID = settings.VAULT_SECRET_ID = ""
        assert {e.id for e in check_secrets_backend()} == {"payera.secrets.E002", "payera.secrets.E003"}


def test_documented_production_setup_passes_check_deploy_and_local_without_key_fails(runtime_role):
    """docs/deploy.md: production runs SECRETS_BACKEND=vault (and the runtime database role); local without
    LOCAL_MASTER_KEYS is refused."""
    import os
    import secrets as pysecrets
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    from tests.fixtures.db_roles import role_database_url

    env = dict(os.environ, DJANGO_ENV="production", SECRET_KEY=pysecrets.token_urlsafe(64),
               ALLOWED_HOSTS="pay.example.com", DJANGO_SETTINGS_MODULE="payera.settings.base",
               DATABASE_URL=role_database_url(runtime_role))
    env.pop("DEBUG", None)
    vault = dict(env, SECRETS_BACKEND="vault", VAULT_ADDR="https://vault.internal:8200", VAULT_ROLE_ID="r",
                 VAULT_SECRET_ID="s")
    # Only our checks are judged here (other apps' deploy warnings are theirs).
    run = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"]
    ok = subprocess.run(run, cwd=root, env=vault, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "payera.secrets" not in ok.stdout + ok.stderr, ok.stdout + ok.stderr
    local = dict(env, SECRETS_BACKEND="local", LOCAL_MASTER_KEYS="")
    refused = subprocess.run(run, cwd=root, env=local, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "payera.secrets.E001" in refused.stderr, refused.stdout + refused.stderr
    with_key = dict(local, LOCAL_MASTER_KEYS=new_master_key_entry("prod1"))
    accepted = subprocess.run(run, cwd=root, env=with_key, capture_output=True, text=True, timeout=120)
    output = accepted.stdout + accepted.stderr
    assert accepted.returncode == 0 and "payera.secrets" not in output, output


def test_storage_outage_is_secrets_unavailable(monkeypatch, key_name):
    from django.db import OperationalError

    backend = LocalBackend(master_keys=new_master_key_entry("m1"))

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(DataKey.objects, "filter", down)
    with pytest.raises(SecretsUnavailableError) as info:
        backend.encrypt(key_name, PAN)
    assert info.value.__cause__ is None


def test_encrypt_and_hash_reads_both_data_keys_in_one_statement_every_time(key_name, django_assert_num_queries):
    """No cache of data keys in the process: a key shredded by another process (its rows deleted)
    is never used again — the next call reads the table and creates new material."""
    backend = LocalBackend(master_keys=new_master_key_entry("m1"))
    hash_key = key_name + "-fp"
    backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)  # creates both keys
    with django_assert_num_queries(1):
        ciphertext, digest = backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)
    material = {row.name: bytes(row.wrapped_key) for row in DataKey.objects.filter(name__in=[key_name, hash_key])}
    DataKey.objects.filter(name__in=[key_name, hash_key]).delete()  # shredded elsewhere
    again, digest_again = backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)
    fresh = {row.name: bytes(row.wrapped_key) for row in DataKey.objects.filter(name__in=[key_name, hash_key])}
    assert fresh.keys() == material.keys() and all(fresh[n] != material[n] for n in fresh)
    assert digest_again != digest
    with pytest.raises(CiphertextInvalidError):
        backend.decrypt(key_name, ciphertext)
    assert backend.decrypt(key_name, again) == PAN
