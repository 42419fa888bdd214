"""`Idempotency-Key` for every POST of the merchant API, in one place.

`MerchantApiView.dispatch` calls `idempotency_begin` before the handler of every POST and
`idempotency_end` with its final answer; endpoints do nothing to get it. With a key:

1. the key (1-255 characters) is claimed for (merchant, key) in its own committed row, with a
   fingerprint of the method, the path and the body, before any work;
2. a repeat with the same fingerprint gets the stored answer again (status and exact bytes) with
   `Idempotent-Replayed: true`; with another fingerprint 422; while the first runs 409
   (both `idempotency_error`);
3. the answer is stored once the view returns, whatever it is (5xx included), once the request's
   work began (payera.core.work). Before any work, a 400 (rejected: corrected, it may run) and a
   503 (a service it needs is down: retried, it may run) release the key instead, so the retry with
   it runs; a 400 or 503 after work began is stored and replayed like any other answer;
4. a claim whose request crashed is taken over by a retry after `IDEMPOTENCY_LOCK_TIMEOUT`.

The services (`payera.idempotency.services`) hold the database side; this module is the HTTP side.
"""

from __future__ import annotations

import hashlib
import json
import logging

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from rest_framework.exceptions import APIException

from payera.core.api import error_body
from payera.core.errors import InvalidRequestError, PayeraError
from payera.idempotency.services import (
    Claim,
    PendingClaim,
    StoredResponse,
    idempotency_claim,
    idempotency_complete,
    idempotency_key_unused,
    idempotency_release,
)

logger = logging.getLogger("payera.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
IDEMPOTENT_METHODS = frozenset({"POST"})
# Answers that release the key when given before any work: the request may run once corrected
# (400) or once the service it needs is back (503). After work began they are stored as any other.
RELEASED_BEFORE_WORK_STATUSES = frozenset({400, 503})
# Data key (secrets backend) for stored answers that carry a secret shown once.
ENCRYPTION_KEY = "idempotency-responses"
UNAVAILABLE_STATUS = 409


class IdempotencyKeyInvalidError(InvalidRequestError):
    code = "idempotency_key_invalid"
    default_message = f"The Idempotency-Key header must be 1-{MAX_KEY_LENGTH} printable characters."


def parse_key(raw: str | None) -> str | None:
    """The header's value, or None if absent; 400 if malformed (empty, too long, control chars)."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not raw.isprintable():
        raise IdempotencyKeyInvalidError(param=HEADER)
    return raw


def canonical_body(body: bytes) -> bytes:
    """JSON bodies compare by meaning (key order and whitespace do not matter); others by bytes."""
    if not body:
        return b""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        return body


def fingerprint(*, method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical_body(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def replay(stored: StoredResponse) -> HttpResponse:
    body = stored.body
    if stored.encrypted:
        from payera.secrets.services import decrypt

        body = decrypt(key=ENCRYPTION_KEY, ciphertext=body.decode())  # fails closed (503) if unavailable
    response = HttpResponse(body, status=stored.status, content_type=stored.content_type or None)
    response[REPLAYED_HEADER] = "true"
    return response


def idempotency_begin(*, django_request, merchant_id: str,
                      with_work: bool = False) -> Claim | PendingClaim | StoredResponse | None:
    """Claim the request's key, if it carries one. None: no key, or not an idempotent method.
    `with_work`: nothing is written yet — a `PendingClaim` the handler's creating transaction
    inserts (`idempotency_resource_record`); `idempotency_pending_settle` after the handler."""
    if django_request.method not in IDEMPOTENT_METHODS:
        return None
    key = parse_key(django_request.headers.get(HEADER))
    if key is None:
        return None
    try:
        body = django_request.body
    except RequestDataTooBig:
        raise  # 413 request_too_large, as without a key (payera.core.api)
    full_path = django_request.get_full_path()  # a different query string is a different request
    if with_work:
        return PendingClaim(merchant_id=merchant_id, key=key,
                            fingerprint=fingerprint(method=django_request.method, path=full_path, body=body),
                            method=django_request.method, path=full_path)
    return idempotency_claim(
        merchant_id=merchant_id,
        key=key,
        fingerprint=fingerprint(method=django_request.method, path=full_path, body=body),
        method=django_request.method,
        path=full_path,
    )


def idempotency_pending_claim(pending: PendingClaim) -> Claim | StoredResponse:
    """The ordinary claim of a pending one's key (its handler wrote nothing, or found the key
    taken): replay, 422, 409, take-over or a fresh claim, exactly as `idempotency_begin`."""
    return idempotency_claim(merchant_id=pending.merchant_id, key=pending.key, fingerprint=pending.fingerprint,
                             method=pending.method, path=pending.path)


def idempotency_pending_refused_unclaimed(pending: PendingClaim, *, status: int | None) -> bool:
    """True when a pending claim's handler, which wrote nothing, is answered `status` without ever
    claiming the key: an answer released anyway (400, 503 before any work) for a key no request has
    used. Claiming it just to release it would hold, for that moment, the key of a valid request
    racing this one (that request, finding the claim, was told 409, or 422 `idempotency_key_reused`
    for a key nothing was ever done with)."""
    return status in RELEASED_BEFORE_WORK_STATUSES and idempotency_key_unused(merchant_id=pending.merchant_id,
                                                                              key=pending.key)


def error_status(error: BaseException) -> int | None:
    """The HTTP status the API's exception handler answers `error` with, for the errors whose status
    the error says itself (ours, DRF's, Django's validation); None for any other."""
    if isinstance(error, PayeraError):
        return error.http_status
    if isinstance(error, APIException):
        return error.status_code
    if isinstance(error, DjangoValidationError):
        return 400
    return None


def idempotency_end(*, claim: Claim, response: HttpResponse, work_began: bool = True, sensitive: bool = False,
                    stored: tuple[int, str, bytes] | None = None) -> None:
    """Store the final (rendered) answer for replay, or release the key after a 400 or 503 given
    before any work (`work_began`: payera.core.work; a claim that took over an object of a crashed
    first try, or an answer stored with the work, began it).

    `sensitive`: the answer carries a secret shown once; it is stored encrypted through the
    secrets backend. If that is unavailable, what is stored is a 409 saying the first request
    ran but its answer can not be shown again — never the secret in clear, never a second effect.
    `stored`: the answer already stored in the work's last transaction (`idempotency_answer_record`):
    nothing to do if the final one is the same.
    """
    began = work_began or bool(claim.resource) or stored is not None
    if response.status_code in RELEASED_BEFORE_WORK_STATUSES and not began:
        idempotency_release(claim=claim)
        return
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    status, content_type, body, encrypted = (
        response.status_code,
        response.get("Content-Type", ""),
        bytes(response.content),
        False,
    )
    if stored is not None and not sensitive and stored == (status, content_type[:100], body):
        return
    if sensitive:
        from payera.secrets.services import encrypt

        try:
            body, encrypted = encrypt(key=ENCRYPTION_KEY, plaintext=body).encode(), True
        except PayeraError:
            logger.exception("could not encrypt an idempotent answer; storing a placeholder")
            status, content_type, encrypted = UNAVAILABLE_STATUS, "application/json", False
            body = json.dumps(
                error_body(
                    "idempotency_error",
                    "idempotency_response_unavailable",
                    "The request with this Idempotency-Key was processed, but its answer can not be shown again.",
                )
            ).encode()
    idempotency_complete(claim=claim, status=status, content_type=content_type, body=body, encrypted=encrypted,
                         overwrite=stored is not None)
