"""Writes of the idempotency app: claim a key, store or release the answer, prune old keys.

Each function commits on its own (`atomic(durable=True)`): a claim must be visible to every
other connection before the request does any work, and must never be rolled back with it.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connections, router, transaction
from django.utils import timezone

from payera.core.db import assert_no_transaction
from payera.core.errors import IdempotencyError
from payera.core.rowsql import kept_cursor, row_statements
from payera.core.work import work_began
from payera.idempotency.models import IdempotencyKey, IdempotencyState

logger = logging.getLogger("payera.idempotency")


class IdempotencyKeyInUseError(IdempotencyError):
    code = "idempotency_key_in_use"
    http_status = 409
    default_message = (
        "A request with this Idempotency-Key is still being processed. Retry after it has finished."
    )


class IdempotencyKeyMismatchError(IdempotencyError):
    code = "idempotency_key_reused"
    http_status = 422
    default_message = (
        "This Idempotency-Key was already used with a different request (method, path or body). "
        "Use a new key for a different request."
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """This request holds the key: do the work, then `idempotency_complete` or `idempotency_release`."""

    row_id: int
    owner: uuid.UUID
    # set when this claim took over a crashed request that had already created its object
    resource: str = ""


@dataclass(slots=True)
class PendingClaim:
    """A key not claimed yet, for a view that claims it in its creating transaction
    (`MerchantApiView.idempotency_claim_with_work`): `idempotency_resource_record` inserts the
    claim there, bound to the object, and sets `claim`. Saves the claim's own commit and the
    binding's UPDATE; the claim still commits before any PSP call (with the first attempt)."""

    merchant_id: str
    key: str
    fingerprint: str
    method: str
    path: str
    claim: Claim | None = None
    # the view's answer made from the object its service finishes with (`idempotency_answer_prepare`),
    # and what `idempotency_answer_record` stored in that service's last transaction
    answer: Callable[[object], tuple[int, str, bytes]] | None = None
    answered: tuple[int, str, bytes] | None = None


class IdempotencyKeyExistsError(Exception):
    """The pending claim's key is already there (a repeat, or a concurrent request that committed
    it first): the creating transaction rolls back and the request is claimed the ordinary way
    (replay, 422, 409 or take-over)."""


_serving: contextvars.ContextVar[Claim | PendingClaim | None] = contextvars.ContextVar(
    "payera_idempotency_claim", default=None
)


@contextmanager
def idempotency_scope(claim: Claim | PendingClaim | None) -> Iterator[None]:
    """Run a request's handler with its claim known to `idempotency_resource_record`."""
    token = _serving.set(claim)
    try:
        yield
    finally:
        _serving.reset(token)


def idempotency_resource_record(*, resource: str) -> None:
    """Bind the object a request creates to the key it is served under (no-op without a key).
    Call it inside the transaction that inserts the object: both commit, or neither does. A
    retry that takes the claim over after a crash (lock timeout) then gets `Claim.resource`
    and answers that object instead of creating a second one."""
    claim = _serving.get()
    if claim is None:
        return
    work_began()  # an object made under the key: its answer is stored whatever it is
    if isinstance(claim, PendingClaim):
        if claim.claim is None:
            _claim_pending(claim, resource=resource)
        return  # the first object the request creates is the one it answers
    IdempotencyKey.objects.filter(pk=claim.row_id, resource="").update(resource=resource[:64])


def idempotency_answer_prepare(answer: Callable[[object], tuple[int, str, bytes]]) -> None:
    """A view under a pending claim says how its answer (status, content type, exact bytes) is made
    from the object its service ends with; no-op otherwise."""
    pending = _serving.get()
    if isinstance(pending, PendingClaim):
        pending.answer = answer


def idempotency_answer_record(obj: object) -> None:
    """A service, inside the transaction that leaves `obj` as its request answers it (its last):
    store that answer there, so the key needs no commit of its own after it. No-op unless the
    request's key was claimed in its creating transaction and its view said how it answers. The
    view's final answer is compared with it (`idempotency_end`): stored again only if it differs."""
    pending = _serving.get()
    if not isinstance(pending, PendingClaim) or pending.claim is None or pending.answer is None:
        return
    status, content_type, body = pending.answer(obj)
    if _store_answer(pending.claim, status=status, content_type=content_type, body=body, encrypted=False,
                     overwrite=pending.answered is not None):
        pending.answered = (status, content_type[:100], body)


def _store_answer(claim: Claim, *, status: int, content_type: str, body: bytes, encrypted: bool,
                  overwrite: bool = False) -> int:
    values = {"state": IdempotencyState.COMPLETED, "response_status": status,
              "response_content_type": content_type[:100], "response_body": body, "response_encrypted": encrypted,
              "completed_at": timezone.now(), "locked_until": None}
    if overwrite:
        states = [IdempotencyState.IN_FLIGHT, IdempotencyState.COMPLETED]
        return IdempotencyKey.objects.filter(pk=claim.row_id, owner=claim.owner, state__in=states).update(**values)
    # the answer of every POST: the same UPDATE as the ORM's above with one state (`state = %s`),
    # its statement built once (payera.core.rowsql)
    using = router.db_for_write(IdempotencyKey)
    connection = connections[using]
    stmts = row_statements(IdempotencyKey, using)
    where = {"id": claim.row_id, "owner": claim.owner, "state": IdempotencyState.IN_FLIGHT}
    params = [stmts.prep[a](v, connection) for a, v in (*values.items(), *where.items())]
    with transaction.mark_for_rollback_on_error(using):
        cursor = kept_cursor(connection)
        cursor.execute(stmts.update(tuple(values), tuple(where)), params)
        return cursor.rowcount


def _claim_pending(pending: PendingClaim, *, resource: str) -> None:
    """Insert the pending claim in the caller's (creating) transaction, bound to `resource`. A
    concurrent insert of the key waits on the unique index until that request's transaction ends;
    if the key is there → `IdempotencyKeyExistsError` (the caller's transaction rolls back)."""
    connection = connections[router.db_for_write(IdempotencyKey)]
    if not connection.in_atomic_block:
        raise RuntimeError("a pending idempotency claim is inserted in the transaction that creates the object")
    now = timezone.now()
    owner = uuid.uuid4()
    row_id = _claim_insert(merchant_id=pending.merchant_id, key=pending.key, fingerprint=pending.fingerprint,
                           method=pending.method, path=pending.path, owner=owner, now=now, resource=resource)
    if row_id is None:
        raise IdempotencyKeyExistsError()
    pending.claim = Claim(row_id=row_id, owner=owner)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The key was used before with the same request: answer this again."""

    status: int
    content_type: str
    body: bytes
    encrypted: bool = False


def _ttl() -> dt.timedelta:
    return dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)


def _lock_timeout() -> dt.timedelta:
    return dt.timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT)


def idempotency_claim(
    *, merchant_id: str, key: str, fingerprint: str, method: str, path: str
) -> Claim | StoredResponse:
    """Claim `key` for this request, or say what to answer instead.

    - no row (or one older than the retention): insert an in-flight claim → `Claim`;
    - in flight and its lock still running → `IdempotencyKeyInUseError` (409), whatever the body:
      the first may still be refused (400) and release the key;
    - a different fingerprint → `IdempotencyKeyMismatchError` (422);
    - completed → `StoredResponse` to replay;
    - in flight but its lock expired (the first request crashed) → taken over → `Claim`.

    A fresh key costs one statement, committed on its own (`INSERT … ON CONFLICT DO NOTHING
    RETURNING`: the unique index waits for a concurrent insert of the key to commit, exactly as
    the durable block it replaces did); an existing key is examined under its row lock.
    """
    assert_no_transaction()  # the claim must commit before the work, never with a caller's
    for _ in range(_CLAIM_TRIES):
        now = timezone.now()
        owner = uuid.uuid4()
        row_id = _claim_insert(merchant_id=merchant_id, key=key, fingerprint=fingerprint, method=method, path=path,
                               owner=owner, now=now)
        if row_id is not None:
            return Claim(row_id=row_id, owner=owner)
        outcome = _claim_existing(merchant_id=merchant_id, key=key, fingerprint=fingerprint, method=method,
                                  path=path, owner=owner, now=now)
        if outcome is not None:
            return outcome
        # released (a request refused before any work) or pruned in between: the key is free again
    raise IdempotencyKeyInUseError()  # freed and taken again under our feet each time: let the client retry


# Inserts of a key freed again between our insert and our look at its row (a refused request
# released it): after that many, 409 and the client retries.
_CLAIM_TRIES = 3


def _claim_insert(*, merchant_id, key, fingerprint, method, path, owner, now, resource: str = "") -> int | None:
    """Insert the in-flight claim in one statement; None if the key exists (committed)."""
    values = {
        "merchant": merchant_id, "key": key, "fingerprint": fingerprint, "method": method, "path": path[:2048],
        "state": IdempotencyState.IN_FLIGHT, "owner": owner, "locked_until": now + _lock_timeout(),
        "response_content_type": "", "response_encrypted": False, "resource": resource[:64], "created_at": now,
    }
    meta = IdempotencyKey._meta
    connection = connections[router.db_for_write(IdempotencyKey)]
    fields = [meta.get_field(name) for name in values]
    qn = connection.ops.quote_name
    sql = (  # identifiers from the model's metadata, quoted; every value is a parameter
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({qn(meta.get_field('merchant').column)}, {qn(meta.get_field('key').column)}) DO NOTHING "
        f"RETURNING {qn(meta.pk.column)}"
    )
    prep = row_statements(IdempotencyKey, router.db_for_write(IdempotencyKey)).prep  # get_db_prep_save
    params = [prep[f.attname](values[f.name], connection) for f in fields]
    cursor = kept_cursor(connection)
    cursor.execute(sql, params)
    row = cursor.fetchone()
    return row[0] if row else None


@transaction.atomic(durable=True)
def _claim_existing(*, merchant_id, key, fingerprint, method, path, owner, now) -> Claim | StoredResponse | None:
    """What the existing row of the key says; None if there is none any more (released or pruned
    since our insert found it): the caller inserts again."""
    row = IdempotencyKey.objects.select_for_update().filter(merchant_id=merchant_id, key=key).first()
    if row is None:
        return None
    running = row.state == IdempotencyState.IN_FLIGHT and row.locked_until is not None and row.locked_until > now
    if row.created_at <= now - _ttl() and not running:
        # Past retention (not yet pruned): the key is fresh again — unless a request holds it now
        # (a take-over keeps `created_at`): resetting it would run the request a second time.
        _reset(row, now=now, owner=owner, fingerprint=fingerprint, method=method, path=path)
        return Claim(row_id=row.pk, owner=owner)
    if running:
        # Another body or not, its outcome is not known yet: a 400 before any work releases the
        # key (the corrected request may then run with it), anything else is stored (another body
        # is then 422). "Reused" now would refuse for good a request that may be the key's only one.
        raise IdempotencyKeyInUseError()
    if row.fingerprint != fingerprint:
        raise IdempotencyKeyMismatchError()
    if row.state == IdempotencyState.COMPLETED:
        return StoredResponse(
            status=row.response_status,
            content_type=row.response_content_type,
            body=bytes(row.response_body),
            encrypted=row.response_encrypted,
        )
    logger.warning("idempotency claim taken over after lock timeout", extra={"idempotency_key_id": row.pk})
    row.owner = owner
    row.locked_until = now + _lock_timeout()
    row.save(update_fields=["owner", "locked_until"])
    return Claim(row_id=row.pk, owner=owner, resource=row.resource)


def idempotency_key_unused(*, merchant_id: str, key: str) -> bool:
    """No request holds or has answered `key` (no row at all). A read, no lock: a request refused
    before any work whose key is unused answers without claiming it (`MerchantApiView`), so it never
    holds, even for a moment, the key of a valid request racing it."""
    return not IdempotencyKey.objects.filter(merchant_id=merchant_id, key=key).exists()


def _reset(row: IdempotencyKey, *, now, owner, fingerprint, method, path) -> None:
    row.fingerprint = fingerprint
    row.method = method
    row.path = path[:2048]
    row.state = IdempotencyState.IN_FLIGHT
    row.owner = owner
    row.locked_until = now + _lock_timeout()
    row.response_status = None
    row.response_content_type = ""
    row.response_body = None
    row.response_encrypted = False
    row.resource = ""
    row.created_at = now
    row.completed_at = None
    row.save()


def idempotency_complete(
    *, claim: Claim, status: int, content_type: str, body: bytes, encrypted: bool = False, overwrite: bool = False
) -> bool:
    """Store the answer for replay. False if this request no longer holds the claim (its lock
    expired and a retry took it over): then the retry's answer is the one that counts.
    One UPDATE, committed on its own (never inside a caller's transaction). `overwrite`: this
    request stored an answer in its work's transaction (`idempotency_answer_record`) and ends with
    another one."""
    assert_no_transaction()
    updated = _store_answer(claim, status=status, content_type=content_type, body=body, encrypted=encrypted,
                            overwrite=overwrite)
    if not updated:
        logger.warning("idempotency claim lost before completion", extra={"idempotency_key_id": claim.row_id})
    return bool(updated)


@transaction.atomic(durable=True)
def idempotency_release(*, claim: Claim) -> None:
    """Forget the claim (the request was answered before any work: refused, or a service it needs
    unavailable): the key may be used again."""
    IdempotencyKey.objects.filter(pk=claim.row_id, owner=claim.owner, state=IdempotencyState.IN_FLIGHT).delete()


@transaction.atomic(durable=True)
def idempotency_unlock(*, claim: Claim) -> None:
    """Leave the claim in flight with its lock run out: the next retry takes it over at once. For
    a take-over that found the crashed first try's object but could not answer it now (a service
    it needs is down): nothing is stored, the next retry answers that object."""
    IdempotencyKey.objects.filter(pk=claim.row_id, owner=claim.owner, state=IdempotencyState.IN_FLIGHT).update(
        locked_until=timezone.now()
    )


def idempotency_prune(*, now: dt.datetime | None = None, batch_size: int = 5000) -> int:
    """Delete keys past their retention, in batches (short transactions). Returns how many.
    A key a request holds now (in flight, its lock running: e.g. taken over late in its retention)
    is kept until that request is done: deleting it would lose its answer and let a retry run the
    request again."""
    now = now or timezone.now()
    cutoff = now - _ttl()
    total = 0
    expired = IdempotencyKey.objects.filter(created_at__lte=cutoff).exclude(
        state=IdempotencyState.IN_FLIGHT, locked_until__gt=now
    )
    while True:
        with transaction.atomic(durable=True):
            ids = list(expired.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            total += expired.filter(pk__in=ids).delete()[0]
