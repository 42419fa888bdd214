"""Local backend for the embedded default: AES-256-GCM, data keys wrapped by a master key.

- Master keys come from the environment (`LOCAL_MASTER_KEYS="id:base64,..."`); the first one
  wraps, the others only unwrap (master-key rotation). Without it, outside production, a fixed
  and publicly known dev key is used; production refuses to start with it.
- Data keys are random 256-bit keys, one row per (name, version) in `secrets_datakey`, wrapped by
  AES-GCM under the master key with the name and version as associated data, so a row can not be
  moved to another name or version. The database (not a file) holds them because every web and
  worker process, on every machine, must see the same versions (docs/decisions/secrets-backends.md).
- Ciphertexts are `local:<key name>:v<version>:<base64url(nonce | ciphertext | tag)>`; the
  associated data binds them to their key name and version.
- Rotation adds a version; old versions keep decrypting. Re-encryption is lazy: `rewrap` (and
  `decrypt_refresh`) for callers' ciphertexts, and by this backend itself for its own rows (KV
  values under an old `_kv` version, data keys wrapped by an old master key) when it reads them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, InterfaceError, OperationalError, connections, router, transaction

from payera.secrets.backends.base import (
    CiphertextInvalidError,
    KeyNotFoundError,
    SecretNotFoundError,
    SecretsBackend,
    SecretsUnavailableError,
    check_key_name,
    check_secret_value,
)

logger = logging.getLogger("payera.secrets")

PREFIX = "local"
KV_KEY = "_kv"  # internal: not a valid public key name, so callers can not decrypt KV values
DEV_MASTER_KEY_ID = "dev"
# Public on purpose: it protects nothing. Only for the embedded default outside production.
DEV_MASTER_KEY = hashlib.sha256(b"payera dev master key - public, refused in production").digest()
_MASTER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def parse_master_keys(raw: str, *, production: bool) -> tuple[str, dict[str, bytes]]:
    """`"id:base64key,id2:base64key2"` -> (current id, {id: key}). Error messages never
    contain key material."""
    raw = (raw or "").strip()
    if not raw:
        if production:
            raise ImproperlyConfigured("LOCAL_MASTER_KEYS must be set in production (see docs/secrets.md)")
        return DEV_MASTER_KEY_ID, {DEV_MASTER_KEY_ID: DEV_MASTER_KEY}
    keys: dict[str, bytes] = {}
    current = ""
    for position, entry in enumerate(raw.split(","), start=1):
        key_id, sep, encoded = entry.strip().partition(":")
        try:
            if not sep or not _MASTER_ID_RE.match(key_id) or key_id in keys:
                raise ValueError
            padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
            key = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
            if len(key) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            raise ImproperlyConfigured(
                f"LOCAL_MASTER_KEYS entry {position} must be <id>:<base64 of 32 random bytes> with a unique id"
            ) from None
        if production and (key_id == DEV_MASTER_KEY_ID or key == DEV_MASTER_KEY):
            raise ImproperlyConfigured("LOCAL_MASTER_KEYS must not use the dev master key in production")
        keys[key_id] = key
        current = current or key_id
    return current, keys


def new_master_key_entry(key_id: str) -> str:
    if not _MASTER_ID_RE.match(key_id):
        raise ValueError("master key ids are 1-32 characters of A-Z, a-z, 0-9, '_' and '-'")
    return f"{key_id}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class _KeyRow:
    """A `DataKey` row as `_unwrap` reads it (from a raw SELECT)."""

    pk: int
    name: str
    version: int
    wrapped_key: bytes
    master_key_id: str


class LocalBackend(SecretsBackend):
    def __init__(self, master_keys: str | None = None) -> None:
        raw = settings.LOCAL_MASTER_KEYS if master_keys is None else master_keys
        self._current_master, self._masters = parse_master_keys(raw, production=settings.PRODUCTION)

    # --- data keys ---------------------------------------------------------------------------
    def _wrap_aad(self, name: str, version: int) -> bytes:
        return f"payera-datakey:{name}:{version}".encode()

    def _unwrap(self, row) -> bytes:
        master = self._masters.get(row.master_key_id)
        if master is None:
            logger.error("data key wrapped by an unconfigured master key", extra={"master_key_id": row.master_key_id})
            raise SecretsUnavailableError()
        wrapped = bytes(row.wrapped_key)
        try:
            key = AESGCM(master).decrypt(wrapped[:12], wrapped[12:], self._wrap_aad(row.name, row.version))
        except InvalidTag:
            logger.error("data key row failed authentication", extra={"key_name": row.name, "version": row.version})
            raise SecretsUnavailableError() from None
        if row.master_key_id != self._current_master:
            self._rewrap_row(row, key)
        return key

    def _wrap(self, name: str, version: int, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self._masters[self._current_master]).encrypt(nonce, key, self._wrap_aad(name, version))

    def _rewrap_row(self, row, key: bytes) -> None:
        """Lazy master-key rotation: a data key read under an old master key is re-wrapped."""
        from payera.secrets.models import DataKey

        DataKey.objects.filter(pk=row.pk, master_key_id=row.master_key_id).update(
            wrapped_key=self._wrap(row.name, row.version, key), master_key_id=self._current_master
        )

    def _create_version(self, name: str, version: int) -> bytes | None:
        """Insert (name, version); None if another process created it first."""
        from payera.secrets.models import DataKey

        key = AESGCM.generate_key(bit_length=256)
        try:
            with transaction.atomic():
                DataKey.objects.create(
                    name=name, version=version, wrapped_key=self._wrap(name, version, key),
                    master_key_id=self._current_master,
                )
        except IntegrityError:
            return None
        return key

    def _latest(self, name: str, *, create: bool) -> tuple[int, bytes]:
        from payera.secrets.models import DataKey

        for _ in range(5):
            row = DataKey.objects.filter(name=name).order_by("-version").first()
            if row is not None:
                return row.version, self._unwrap(row)
            if not create:
                raise KeyNotFoundError()
            key = self._create_version(name, 1)
            if key is not None:
                return 1, key
        raise SecretsUnavailableError()

    def _version(self, name: str, version: int) -> bytes:
        from payera.secrets.models import DataKey

        row = DataKey.objects.filter(name=name, version=version).first()
        if row is None:
            raise KeyNotFoundError()
        return self._unwrap(row)

    # --- crypto ----------------------------------------------------------------------------
    def _aad(self, name: str, version: int, context: str) -> bytes:
        return f"payera-local:{name}:{version}:{context}".encode()

    def _encrypt(self, name: str, plaintext: bytes, context: str = "") -> str:
        if not isinstance(plaintext, bytes | bytearray):
            raise TypeError("plaintext must be bytes")
        version, key = self._latest(name, create=True)
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, bytes(plaintext), self._aad(name, version, context))
        return f"{PREFIX}:{name}:v{version}:{_b64e(nonce + sealed)}"

    def _parse(self, name: str, ciphertext: str) -> tuple[int, bytes]:
        try:
            prefix, ct_name, version, payload = ciphertext.split(":")
            if prefix != PREFIX or ct_name != name or not version.startswith("v"):
                raise ValueError
            raw = _b64d(payload)
            if len(raw) < 12 + 16:
                raise ValueError
            return int(version[1:]), raw
        except (ValueError, AttributeError, binascii.Error):
            raise CiphertextInvalidError() from None

    def _decrypt(self, name: str, ciphertext: str, context: str = "") -> bytes:
        version, raw = self._parse(name, ciphertext)
        key = self._version(name, version)
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], self._aad(name, version, context))
        except InvalidTag:
            raise CiphertextInvalidError() from None

    def encrypt(self, key_name: str, plaintext: bytes) -> str:
        with _db_errors():
            return self._encrypt(check_key_name(key_name), plaintext)

    def decrypt(self, key_name: str, ciphertext: str) -> bytes:
        with _db_errors():
            return self._decrypt(check_key_name(key_name), ciphertext)

    def rotate_key(self, key_name: str) -> int:
        check_key_name(key_name)
        with _db_errors():
            return self._rotate(key_name)

    def _rotate(self, name: str) -> int:
        from payera.secrets.models import DataKey

        for _ in range(5):
            latest = DataKey.objects.filter(name=name).order_by("-version").values_list("version", flat=True).first()
            version = (latest or 0) + 1
            if self._create_version(name, version) is not None:
                return version
        raise SecretsUnavailableError()

    def rewrap(self, key_name: str, ciphertext: str) -> str:
        with _db_errors():
            return self._encrypt(check_key_name(key_name), self._decrypt(key_name, ciphertext))

    def encrypt_and_hash(self, key_name: str, plaintext: bytes, hash_key_name: str, data: bytes) -> tuple[str, str]:
        """Both data keys in one statement (the latest version of `key_name`, version 1 of
        `hash_key_name`), read from the table on every call like the single operations: no cache,
        so a key shredded by any process fails here at once. A key not created yet: the single
        operations (which create it)."""
        check_key_name(key_name)
        check_key_name(hash_key_name)
        if not isinstance(plaintext, bytes | bytearray):
            raise TypeError("plaintext must be bytes")
        with _db_errors():
            latest, base = self._pair(key_name, hash_key_name)
            if latest is None or base is None:
                return self._encrypt(key_name, plaintext), self.keyed_hash(hash_key_name, data)
            version, key = latest.version, self._unwrap(latest)
            base_key = self._unwrap(base)
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, bytes(plaintext), self._aad(key_name, version, ""))
        return f"{PREFIX}:{key_name}:v{version}:{_b64e(nonce + sealed)}", self._hmac(hash_key_name, base_key, data)

    def _pair(self, name: str, hash_name: str):
        """(latest row of `name`, version 1 of `hash_name`), either None if absent; one SELECT."""
        from payera.secrets.models import DataKey

        meta = DataKey._meta
        connection = connections[router.db_for_read(DataKey)]
        qn = connection.ops.quote_name
        col = {c: qn(meta.get_field(c).column) for c in ("id", "name", "version", "wrapped_key", "master_key_id")}
        table = qn(meta.db_table)
        sql = (  # identifiers from the model's metadata, quoted; values are parameters
            f"SELECT {', '.join(col.values())} FROM {table} "  # noqa: S608
            f"WHERE ({col['name']} = %s AND {col['version']} = "
            f"(SELECT MAX({col['version']}) FROM {table} WHERE {col['name']} = %s)) "
            f"OR ({col['name']} = %s AND {col['version']} = 1)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [name, name, hash_name])
            rows = [_KeyRow(*row) for row in cursor.fetchall()]
        latest = next((r for r in rows if r.name == name), None)
        base = next((r for r in rows if r.name == hash_name and r.version == 1), None)
        return latest, base

    def _hmac(self, key_name: str, base: bytes, data: bytes) -> str:
        info = b"payera-hmac:" + key_name.encode()
        hmac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(base)
        return hmac.new(hmac_key, bytes(data), hashlib.sha256).hexdigest()

    def keyed_hash(self, key_name: str, data: bytes) -> str:
        """HMAC-SHA256 under a subkey derived (HKDF) from version 1 of the named key: stable for
        the key's lifetime (card fingerprints must keep matching after the key is rotated for
        encryption), and never the AES key itself."""
        check_key_name(key_name)
        with _db_errors():
            try:
                base = self._version(key_name, 1)
            except KeyNotFoundError:
                self._latest(key_name, create=True)
                base = self._version(key_name, 1)
        return self._hmac(key_name, base, data)

    def key_version_latest(self, key_name: str) -> int:
        from payera.secrets.models import DataKey

        with _db_errors():
            latest = DataKey.objects.filter(name=check_key_name(key_name)).order_by("-version")
            return latest.values_list("version", flat=True).first() or 0

    def delete_key_material(self, key_name: str) -> None:
        from payera.secrets.models import DataKey

        with _db_errors():
            DataKey.objects.filter(name=check_key_name(key_name)).delete()

    # --- KV --------------------------------------------------------------------------------
    def secret_put(self, path: str, data: dict) -> None:
        from payera.secrets.models import StoredSecret

        check_secret_value(data, path=path)
        payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        with _db_errors():
            ciphertext = self._encrypt(KV_KEY, payload, context=f"kv:{path}")
            StoredSecret.objects.update_or_create(path=path, defaults={"ciphertext": ciphertext})

    def secret_get(self, path: str) -> dict:
        from payera.secrets.models import StoredSecret

        with _db_errors():
            row = StoredSecret.objects.filter(path=path).first()
            if row is None:
                raise SecretNotFoundError(path)
            payload = self._decrypt(KV_KEY, row.ciphertext, context=f"kv:{path}")
            version, _ = self._parse(KV_KEY, row.ciphertext)
            if version < self.__kv_latest():
                # Lazy re-encryption under the newest `_kv` version; a concurrent put wins.
                fresh = self._encrypt(KV_KEY, payload, context=f"kv:{path}")
                StoredSecret.objects.filter(pk=row.pk, ciphertext=row.ciphertext).update(ciphertext=fresh)
        return json.loads(payload)

    def __kv_latest(self) -> int:
        from payera.secrets.models import DataKey

        return DataKey.objects.filter(name=KV_KEY).order_by("-version").values_list("version", flat=True).first() or 0

    def rotate_kv_key(self) -> int:
        """Rotate the internal key KV values are stored under (values re-encrypt when read)."""
        with _db_errors():
            return self._rotate(KV_KEY)

    def rewrap_data_keys(self) -> int:
        """Re-wrap every data key under the current master key (so an old one can be retired)."""
        from payera.secrets.models import DataKey

        count = 0
        with _db_errors():
            for row in DataKey.objects.exclude(master_key_id=self._current_master).iterator():
                self._unwrap(row)
                count += 1
        return count


class _db_errors:
    """A database that can not be reached is a secrets outage for callers: fail closed (503)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, (OperationalError, InterfaceError)):
            logger.error("secrets storage unavailable", extra={"error": exc_type.__name__})
            raise SecretsUnavailableError() from None
        return False
