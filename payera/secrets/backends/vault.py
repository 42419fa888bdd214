"""HashiCorp Vault (or OpenBao) through hvac: KV v2 for secrets, Transit for keys.

- Auth: a static token (`VAULT_TOKEN`) or AppRole (`VAULT_ROLE_ID` + `VAULT_SECRET_ID`, preferred).
  The token's TTL is learnt at login; a renewable token is renewed once two thirds of its TTL
  have passed. A call answered 401/403 re-authenticates once (AppRole: a new login; static token:
  a renewal) and is retried once; a second refusal is an outage.
- Fail closed: Vault unreachable, timing out, sealed, answering 5xx/429 or refusing us raises
  `SecretsUnavailableError` (503 `api_error`). Any other refusal (400 a bad path, value or a
  mount's or key's constraint, 404, 405, 412) raises `SecretsRequestError` (500): never hvac's
  exception, whose text carries Vault's message and the request's URL. Nothing is ever stored or
  returned in clear instead, and no token, secret id, plaintext or Vault error text goes into our
  errors or logs.
- KV paths live under `VAULT_KV_PREFIX/` in the KV v2 mount, so a policy can be narrow.
- Ciphertexts are Transit's own (`vault:v<version>:...`): Vault tracks the key name by path.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import hvac
import requests
from django.conf import settings
from hvac import adapters as hvac_adapters
from hvac import exceptions as hvac_errors

from payera.secrets.backends.base import (
    CiphertextInvalidError,
    KeyNotFoundError,
    SecretNotFoundError,
    SecretsBackend,
    SecretsRequestError,
    SecretsUnavailableError,
    check_key_name,
    check_secret_value,
)

logger = logging.getLogger("payera.secrets")
T = TypeVar("T")

_OUTAGE = (
    hvac_errors.VaultDown,
    hvac_errors.InternalServerError,
    hvac_errors.BadGateway,
    hvac_errors.RateLimitExceeded,
    hvac_errors.VaultNotInitialized,
    hvac_errors.UnexpectedError,
    requests.exceptions.RequestException,
)
_REFUSED = (hvac_errors.Forbidden, hvac_errors.Unauthorized)
# What a refusal of a request as wrong means, in our words (Vault's own text may echo the request).
_REQUEST_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (hvac_errors.InvalidRequest, "Vault answered 400, invalid request (check the path, the value, and the mount's"
                                 " or key's settings, e.g. check-and-set or a derived key)"),
    (hvac_errors.InvalidPath, "Vault answered 404, no such path or mount"),
    (hvac_errors.UnsupportedOperation, "Vault answered 405, unsupported operation"),
    (hvac_errors.PreconditionFailed, "Vault answered 412, precondition failed"),
    (hvac_errors.ParamValidationError, "invalid parameters"),
    (requests.exceptions.InvalidJSONError, "the request could not be encoded as JSON"),
    (hvac_errors.VaultError, "unexpected answer from Vault"),
)
_REQUEST_REFUSED = tuple(error for error, _ in _REQUEST_REFUSALS)


class _Adapter(hvac_adapters.JSONAdapter):
    """hvac's adapter, naming the two refusals hvac 2.4 has a class for but never raises: a 405 or
    412 came out as `UnexpectedError`, which is also what an unknown 5xx is, so a request Vault
    refused as wrong (a KV mount set to a path that does not take the operation) read as an outage
    ("retry later", for ever). Vault's text is not kept (it may echo the request)."""

    def _raise_for_error(self, method: str, url: str, response: requests.Response):
        if response.status_code == 405:
            raise hvac_errors.UnsupportedOperation("Vault answered 405", method=method)
        if response.status_code == 412:
            raise hvac_errors.PreconditionFailed("Vault answered 412", method=method)
        return super()._raise_for_error(method, url, response)


def _refusal_reason(exc: Exception) -> str:
    return next(reason for error, reason in _REQUEST_REFUSALS if isinstance(exc, error))


def _setting(name: str, default=None):
    return getattr(settings, name, default)


class VaultBackend(SecretsBackend):
    def __init__(
        self,
        *,
        addr: str | None = None,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        approle_mount: str | None = None,
        kv_mount: str | None = None,
        kv_prefix: str | None = None,
        transit_mount: str | None = None,
        timeout: float | None = None,
        verify: bool | str | None = None,
    ) -> None:
        self.addr = addr or _setting("VAULT_ADDR", "")
        if not self.addr:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("SECRETS_BACKEND=vault needs VAULT_ADDR")
        self._static_token = token if token is not None else _setting("VAULT_TOKEN", "")
        self._role_id = role_id if role_id is not None else _setting("VAULT_ROLE_ID", "")
        self._secret_id = secret_id if secret_id is not None else _setting("VAULT_SECRET_ID", "")
        self.approle_mount = approle_mount or _setting("VAULT_APPROLE_MOUNT", "approle")
        self.kv_mount = kv_mount or _setting("VAULT_KV_MOUNT", "secret")
        self.kv_prefix = (kv_prefix if kv_prefix is not None else _setting("VAULT_KV_PREFIX", "payera")).strip("/")
        self.transit_mount = transit_mount or _setting("VAULT_TRANSIT_MOUNT", "transit")
        if verify is None:
            verify = _setting("VAULT_CACERT", "") or True
        self._client = hvac.Client(url=self.addr, timeout=timeout or _setting("VAULT_TIMEOUT", 5.0), verify=verify,
                                   adapter=_Adapter)
        self._lock = threading.RLock()
        self._authenticated = False
        self._renew_at: float | None = None  # monotonic time after which a renewal is due
        self._renewable = False
        # Counters, for metrics and tests: how often we logged in / renewed.
        self.logins = 0
        self.renewals = 0

    def __repr__(self) -> str:  # never the token
        return f"<VaultBackend {self.addr}>"

    # --- authentication ----------------------------------------------------------------------
    @property
    def uses_approle(self) -> bool:
        return bool(self._role_id)

    def _remember_lease(self, auth: dict) -> None:
        ttl = int(auth.get("lease_duration") or 0)
        self._renewable = bool(auth.get("renewable"))
        self._renew_at = time.monotonic() + ttl * 2 / 3 if ttl > 0 else None

    def _login(self) -> None:
        """Obtain a token: AppRole login, or adopt the static token and learn its TTL."""
        with self._lock:
            try:
                if self.uses_approle:
                    resp = self._client.auth.approle.login(
                        role_id=self._role_id, secret_id=self._secret_id or None, mount_point=self.approle_mount
                    )
                    self._remember_lease(resp["auth"])
                else:
                    if not self._static_token:
                        logger.error("vault: no token and no AppRole configured")
                        raise SecretsUnavailableError()
                    self._client.token = self._static_token
                    try:
                        data = self._client.auth.token.lookup_self()["data"]
                    except _REFUSED:
                        data = {}  # a token without lookup-self: no proactive renewal, calls decide
                    self._remember_lease({"lease_duration": data.get("ttl"), "renewable": data.get("renewable")})
            except (*_OUTAGE, hvac_errors.VaultError) as exc:  # every refusal too: we can not sign in
                self._authenticated = False
                logger.error("vault: authentication failed", extra={"error": type(exc).__name__})
                raise SecretsUnavailableError() from None
            self.logins += 1
            self._authenticated = True

    def _renew(self) -> bool:
        with self._lock:
            try:
                resp = self._client.auth.token.renew_self()
            except (*_OUTAGE, hvac_errors.VaultError) as exc:
                logger.warning("vault: token renewal failed", extra={"error": type(exc).__name__})
                return False
            self._remember_lease(resp["auth"])
            self.renewals += 1
            return True

    def _ensure_auth(self) -> None:
        with self._lock:
            if not self._authenticated:
                self._login()
            elif self._renew_at is not None and time.monotonic() >= self._renew_at:
                if not (self._renewable and self._renew()) and self.uses_approle:
                    self._login()

    def _reauthenticate(self) -> None:
        """After a 401/403: log in again (AppRole) or renew (static token), once."""
        with self._lock:
            if self.uses_approle:
                self._login()
            elif not self._renew():
                raise SecretsUnavailableError()

    def _call(self, op: Callable[[hvac.Client], T], *, what: str, path: str = "") -> T:
        self._ensure_auth()
        for attempt in (1, 2):
            try:
                return op(self._client)
            except requests.exceptions.InvalidJSONError as exc:  # a RequestException, not an outage
                raise self._request_refused(exc, what=what, path=path) from None
            except _REFUSED as exc:
                if attempt == 2:
                    logger.error("vault: permission denied", extra={"operation": what, "error": type(exc).__name__})
                    raise SecretsUnavailableError() from None
                logger.info("vault: refused, re-authenticating once", extra={"operation": what})
                self._reauthenticate()
            except _OUTAGE as exc:
                logger.error("vault: unavailable", extra={"operation": what, "error": type(exc).__name__})
                raise SecretsUnavailableError() from None
            except _REQUEST_REFUSED as exc:
                raise self._request_refused(exc, what=what, path=path) from None
        raise SecretsUnavailableError()  # pragma: no cover - the loop always returns or raises

    @staticmethod
    def _request_refused(exc: Exception, *, what: str, path: str) -> SecretsRequestError:
        """Vault refused the request as wrong: our error, in our words (the operation, the KV path,
        the kind of refusal), logged with the exception class only; hvac's exception (Vault's
        message, the URL, the response) is dropped (`from None` at the raise)."""
        logger.error("vault: request refused", extra={"operation": what, "error": type(exc).__name__})
        return SecretsRequestError(what, _refusal_reason(exc), path=path)

    # --- KV v2 -------------------------------------------------------------------------------
    def _kv_path(self, path: str) -> str:
        path = path.strip("/")
        if not path or ".." in path.split("/"):
            raise ValueError("invalid secret path")
        return f"{self.kv_prefix}/{path}" if self.kv_prefix else path

    def secret_get(self, path: str) -> dict:
        full = self._kv_path(path)

        def op(client: hvac.Client) -> dict:
            try:
                resp = client.secrets.kv.v2.read_secret_version(
                    path=full, mount_point=self.kv_mount, raise_on_deleted_version=True
                )
            except hvac_errors.InvalidPath:
                raise SecretNotFoundError(path) from None
            return resp["data"]["data"]

        return self._call(op, what="kv_get", path=path)

    def secret_put(self, path: str, data: dict) -> None:
        check_secret_value(data, path=path)
        full = self._kv_path(path)
        self._call(
            lambda c: c.secrets.kv.v2.create_or_update_secret(path=full, secret=data, mount_point=self.kv_mount),
            what="kv_put",
            path=path,
        )

    # --- Transit -----------------------------------------------------------------------------
    def _transit_error(self, exc: Exception) -> Exception:
        text = " ".join(getattr(exc, "errors", None) or [str(exc)]).lower()
        if isinstance(exc, hvac_errors.InvalidPath) or "not found" in text:
            return KeyNotFoundError()
        return CiphertextInvalidError()

    def encrypt(self, key_name: str, plaintext: bytes) -> str:
        check_key_name(key_name)
        if not isinstance(plaintext, bytes | bytearray):
            raise TypeError("plaintext must be bytes")
        encoded = base64.b64encode(bytes(plaintext)).decode()

        def op(client: hvac.Client) -> str:
            resp = client.secrets.transit.encrypt_data(
                name=key_name, plaintext=encoded, mount_point=self.transit_mount
            )
            return resp["data"]["ciphertext"]

        return self._call(op, what="encrypt")

    def decrypt(self, key_name: str, ciphertext: str) -> bytes:
        check_key_name(key_name)
        if not isinstance(ciphertext, str) or not ciphertext.startswith("vault:v"):
            raise CiphertextInvalidError()

        def op(client: hvac.Client) -> bytes:
            try:
                resp = client.secrets.transit.decrypt_data(
                    name=key_name, ciphertext=ciphertext, mount_point=self.transit_mount
                )
            except (hvac_errors.InvalidRequest, hvac_errors.InvalidPath) as exc:
                raise self._transit_error(exc) from None
            try:
                return base64.b64decode(resp["data"]["plaintext"] or "")
            except binascii.Error:
                raise CiphertextInvalidError() from None

        return self._call(op, what="decrypt")

    def key_version_latest(self, key_name: str) -> int:
        check_key_name(key_name)

        def op(client: hvac.Client) -> int:
            try:
                resp = client.secrets.transit.read_key(name=key_name, mount_point=self.transit_mount)
            except hvac_errors.InvalidPath:
                return 0
            return int(resp["data"]["latest_version"])

        return self._call(op, what="read_key")

    def rotate_key(self, key_name: str) -> int:
        check_key_name(key_name)

        def op(client: hvac.Client) -> None:
            try:
                client.secrets.transit.rotate_key(name=key_name, mount_point=self.transit_mount)
            except (hvac_errors.InvalidPath, hvac_errors.InvalidRequest):
                # Rotating a key that does not exist yet creates it (version 1), as locally.
                client.secrets.transit.create_key(name=key_name, mount_point=self.transit_mount)

        self._call(op, what="rotate")
        return self.key_version_latest(key_name)

    def rewrap(self, key_name: str, ciphertext: str) -> str:
        check_key_name(key_name)
        if not isinstance(ciphertext, str) or not ciphertext.startswith("vault:v"):
            raise CiphertextInvalidError()

        def op(client: hvac.Client) -> str:
            try:
                resp = client.secrets.transit.rewrap_data(
                    name=key_name, ciphertext=ciphertext, mount_point=self.transit_mount
                )
            except (hvac_errors.InvalidRequest, hvac_errors.InvalidPath) as exc:
                raise self._transit_error(exc) from None
            return resp["data"]["ciphertext"]

        return self._call(op, what="rewrap")

    def keyed_hash(self, key_name: str, data: bytes) -> str:
        """Transit HMAC-SHA256 under version 1 of the key (Transit keeps a separate HMAC key per
        version): stable for the key's lifetime, so card fingerprints survive a rotation."""
        check_key_name(key_name)
        encoded = base64.b64encode(bytes(data)).decode()

        def op(client: hvac.Client) -> str:
            def hmac_v1() -> str:
                resp = client.secrets.transit.generate_hmac(
                    name=key_name, hash_input=encoded, key_version=1, algorithm="sha2-256",
                    mount_point=self.transit_mount,
                )
                return resp["data"]["hmac"]

            try:
                value = hmac_v1()
            except (hvac_errors.InvalidRequest, hvac_errors.InvalidPath):
                client.secrets.transit.create_key(name=key_name, mount_point=self.transit_mount)
                value = hmac_v1()
            return base64.b64decode(value.rsplit(":", 1)[-1]).hex()

        return self._call(op, what="hmac")

    def delete_key_material(self, key_name: str) -> None:
        """Crypto-shred: allow deletion on the Transit key, then delete it (all versions)."""
        check_key_name(key_name)

        def op(client: hvac.Client) -> None:
            try:
                client.secrets.transit.update_key_configuration(
                    name=key_name, deletion_allowed=True, mount_point=self.transit_mount
                )
            except (hvac_errors.InvalidPath, hvac_errors.InvalidRequest):
                return  # no such key: nothing to shred
            client.secrets.transit.delete_key(name=key_name, mount_point=self.transit_mount)

        self._call(op, what="delete_key")
