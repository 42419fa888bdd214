"""One contract every secrets backend passes (as Django's BaseCacheTests): subclasses provide a
`backend` fixture. Run against LocalBackend (PostgreSQL), VaultBackend (a real OpenBao server)
and the in-memory double."""

from __future__ import annotations

import hashlib
import hmac as std_hmac

import pytest

from payera.secrets.backends.base import (
    CiphertextInvalidError,
    KeyNotFoundError,
    SecretNotFoundError,
    SecretsBackend,
)

PAN = b"4242424242424242"


class SecretsBackendContract:
    @pytest.fixture
    def backend(self) -> SecretsBackend:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- KV ------------------------------------------------------------------------------------
    def test_kv_put_then_get_returns_the_value(self, backend, kv_path):
        value = {"api_key": "psp-secret-1", "nested": {"a": [1, 2]}, "n": 3}
        backend.secret_put(kv_path, value)
        assert backend.secret_get(kv_path) == value

    def test_kv_put_overwrites(self, backend, kv_path):
        backend.secret_put(kv_path, {"v": "1"})
        backend.secret_put(kv_path, {"v": "2"})
        assert backend.secret_get(kv_path) == {"v": "2"}

    def test_kv_missing_path_raises_not_found(self, backend, kv_path):
        with pytest.raises(SecretNotFoundError):
            backend.secret_get(kv_path + "-missing")

    @pytest.mark.parametrize("value", [b"psp-secret-bytes", float("nan"), {"psp-secret-in-a-set"}, "psp-secret-str"])
    def test_kv_put_refuses_a_value_that_is_not_json_without_quoting_it(self, backend, kv_path, value):
        """A value that is not JSON used to leave each backend its own way (TypeError, a 503
        "retry later" from Vault for NaN, or stored by the memory backend): one typed error now,
        naming the path and never the value, and nothing stored."""
        from payera.secrets.backends.base import SecretValueInvalidError

        data = value if isinstance(value, str) else {"api_key": value}
        with pytest.raises(SecretValueInvalidError) as info:
            backend.secret_put(kv_path, data)
        assert kv_path in info.value.message and "psp-secret" not in info.value.message
        with pytest.raises(SecretNotFoundError):
            backend.secret_get(kv_path)

    def test_kv_get_returns_a_copy(self, backend, kv_path):
        backend.secret_put(kv_path, {"v": "1"})
        backend.secret_get(kv_path)["v"] = "changed"
        assert backend.secret_get(kv_path) == {"v": "1"}

    # --- encrypt / decrypt ---------------------------------------------------------------------
    def test_encrypt_then_decrypt_round_trips(self, backend, key_name):
        ciphertext = backend.encrypt(key_name, PAN)
        assert isinstance(ciphertext, str)
        assert PAN.decode() not in ciphertext
        assert backend.decrypt(key_name, ciphertext) == PAN

    def test_encrypt_empty_and_binary(self, backend, key_name):
        for plaintext in (b"", bytes(range(256))):
            assert backend.decrypt(key_name, backend.encrypt(key_name, plaintext)) == plaintext

    def test_encryption_is_randomized(self, backend, key_name):
        assert backend.encrypt(key_name, PAN) != backend.encrypt(key_name, PAN)

    def test_ciphertext_carries_its_key_version(self, backend, key_name):
        ciphertext = backend.encrypt(key_name, PAN)
        assert backend.ciphertext_version(ciphertext) == 1
        assert ":v1:" in ciphertext

    def test_tampered_ciphertext_is_refused(self, backend, key_name):
        ciphertext = backend.encrypt(key_name, PAN)
        head, payload = ciphertext.rsplit(":", 1)
        flipped = payload[:-6] + ("A" if payload[-6] != "A" else "B") + payload[-5:]
        with pytest.raises(CiphertextInvalidError):
            backend.decrypt(key_name, f"{head}:{flipped}")
        with pytest.raises(CiphertextInvalidError):
            backend.decrypt(key_name, "garbage")

    def test_ciphertext_of_another_key_is_refused(self, backend, key_name):
        ciphertext = backend.encrypt(key_name, PAN)
        backend.encrypt(key_name + "-other", b"x")
        with pytest.raises(CiphertextInvalidError):
            backend.decrypt(key_name + "-other", ciphertext)

    def test_invalid_key_name_is_refused(self, backend):
        with pytest.raises(ValueError):
            backend.encrypt("../sys/seal", b"x")

    # --- rotation ------------------------------------------------------------------------------
    def test_rotate_then_old_ciphertexts_still_decrypt(self, backend, key_name):
        old = backend.encrypt(key_name, PAN)
        assert backend.rotate_key(key_name) == 2
        new = backend.encrypt(key_name, PAN)
        assert backend.ciphertext_version(new) == 2
        assert backend.key_version_latest(key_name) == 2
        assert backend.decrypt(key_name, old) == PAN
        assert backend.decrypt(key_name, new) == PAN

    def test_rotate_missing_key_creates_version_one(self, backend, key_name):
        assert backend.key_version_latest(key_name) == 0
        assert backend.rotate_key(key_name) == 1
        assert backend.ciphertext_version(backend.encrypt(key_name, b"x")) == 1

    def test_rewrap_moves_to_newest_version(self, backend, key_name):
        old = backend.encrypt(key_name, PAN)
        backend.rotate_key(key_name)
        backend.rotate_key(key_name)
        rewrapped = backend.rewrap(key_name, old)
        assert backend.ciphertext_version(rewrapped) == 3
        assert PAN.decode() not in rewrapped
        assert backend.decrypt(key_name, rewrapped) == PAN

    def test_decrypt_refresh_rewraps_only_stale_ciphertexts(self, backend, key_name):
        old = backend.encrypt(key_name, PAN)
        assert backend.decrypt_refresh(key_name, old) == (PAN, None)
        backend.rotate_key(key_name)
        plaintext, fresh = backend.decrypt_refresh(key_name, old)
        assert plaintext == PAN and fresh is not None
        assert backend.ciphertext_version(fresh) == 2
        assert backend.decrypt_refresh(key_name, fresh) == (PAN, None)

    # --- keyed hash (card fingerprints) ----------------------------------------------------------
    def test_keyed_hash_is_deterministic_hex_and_never_a_plain_hash(self, backend, key_name):
        first = backend.keyed_hash(key_name, PAN)
        assert first == backend.keyed_hash(key_name, PAN)
        assert len(first) == 64 and int(first, 16) >= 0
        assert first != hashlib.sha256(PAN).hexdigest()
        assert first != std_hmac.new(b"", PAN, hashlib.sha256).hexdigest()
        assert backend.keyed_hash(key_name, b"4000000000000002") != first

    def test_keyed_hash_depends_on_the_key(self, backend, key_name):
        assert backend.keyed_hash(key_name, PAN) != backend.keyed_hash(key_name + "-b", PAN)

    def test_keyed_hash_is_stable_across_rotation(self, backend, key_name):
        before = backend.keyed_hash(key_name, PAN)
        backend.rotate_key(key_name)
        assert backend.keyed_hash(key_name, PAN) == before

    # --- encrypt and hash at once (a card number and its fingerprint) ----------------------------
    def test_encrypt_and_hash_is_encrypt_plus_keyed_hash(self, backend, key_name):
        hash_key = key_name + "-fp"
        for _ in range(2):  # keys created by the first call, read by the second
            ciphertext, digest = backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)
            assert backend.decrypt(key_name, ciphertext) == PAN
            assert digest == backend.keyed_hash(hash_key, PAN)
        backend.rotate_key(key_name)
        backend.rotate_key(hash_key)
        ciphertext, digest = backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)
        assert ciphertext.split(":")[-2] == backend.encrypt(key_name, PAN).split(":")[-2]  # the newest version
        assert digest == backend.keyed_hash(hash_key, PAN)  # stable across rotation

    def test_encrypt_and_hash_never_uses_a_shredded_key(self, backend, key_name):
        hash_key = key_name + "-fp"
        old_ciphertext, _ = backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)
        backend.delete_key_material(key_name)
        ciphertext, _ = backend.encrypt_and_hash(key_name, PAN, hash_key, PAN)
        with pytest.raises(CiphertextInvalidError):  # key not found, or a new key that is not it
            backend.decrypt(key_name, old_ciphertext)
        # what it encrypts now is under new material: the shredded key is not in use anywhere
        assert backend.decrypt(key_name, ciphertext) == PAN
        backend.delete_key_material(key_name)
        with pytest.raises(KeyNotFoundError):
            backend.decrypt(key_name, ciphertext)

    # --- crypto-shred --------------------------------------------------------------------------
    def test_delete_key_material_makes_ciphertexts_unreadable(self, backend, key_name):
        ciphertext = backend.encrypt(key_name, PAN)
        backend.rotate_key(key_name)
        newer = backend.encrypt(key_name, PAN)
        backend.delete_key_material(key_name)
        for ct in (ciphertext, newer):
            with pytest.raises(KeyNotFoundError):
                backend.decrypt(key_name, ct)
        assert backend.key_version_latest(key_name) == 0

    def test_delete_key_material_of_missing_key_is_a_no_op(self, backend, key_name):
        backend.delete_key_material(key_name)
