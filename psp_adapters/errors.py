"""Typed PSP errors. Only transport and protocol problems raise; declines are values.

The one question a caller must answer after an error is "may the PSP have processed it?":
- `PspUnavailableError`: surely NOT processed (connection refused, 502/503, auth refused):
  the next connector may be tried.
- `PspTimeoutError`: the outcome is UNKNOWN (read timeout, connection dropped after sending,
  504): never try another connector; recovery asks the PSP (`inquire`).
- `PspProtocolError`: an answer we cannot understand; treated as unknown too.
- `PspIdempotencyConflictError`: our idempotency key was already used at the PSP with another
  request (409/422 `idempotency_conflict`): the first one may have been processed, so the outcome is UNKNOWN too.
- `PspRequestRejectedError`: any other 4xx refusal (invalid request): NOT processed.
`may_have_processed` says it for every class.
"""

from __future__ import annotations

import json
from typing import ClassVar

import httpx

from payera.core.errors import PayeraError
from payera.core.masking import mask_text
from payera.core.nul import storable


class PspError(PayeraError):
    type = "api_error"
    code = "psp_error"
    http_status = 502
    default_message = "The payment service provider failed."
    may_have_processed: ClassVar[bool] = True

    def __init__(
        self,
        message: str | None = None,
        *,
        connector: str = "",
        status_code: int | None = None,
        psp_code: str = "",
    ):
        # the message may quote the PSP's answer (an error body echoing the card it was sent): it is
        # stored on the attempt and logged, so it is masked here, once for every adapter
        super().__init__(mask_text(message) if message else message)
        self.connector = connector
        self.status_code = status_code
        self.psp_code = psp_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(connector={self.connector!r}, status={self.status_code}, {self.message!r})"


class PspUnavailableError(PspError):
    code = "psp_unavailable"
    http_status = 503
    default_message = "The payment service provider is unavailable; the request was not processed."
    may_have_processed = False


class PspAuthenticationError(PspUnavailableError):
    """The PSP refused our credentials (401/403): nothing was processed; a configuration problem."""

    code = "psp_authentication_failed"


class PspTimeoutError(PspError):
    code = "psp_timeout"
    http_status = 504
    default_message = "The payment service provider did not answer in time; the outcome is unknown."
    may_have_processed = True


class PspProtocolError(PspError):
    code = "psp_protocol_error"
    default_message = "The payment service provider gave an answer that could not be understood."
    may_have_processed = True


class PspRequestRejectedError(PspProtocolError):
    """The PSP refused the request as invalid (400/409/422): nothing was processed.
    A bug on our side, never a decline. (An idempotency key reused with another body is not this:
    see `PspIdempotencyConflictError`.)"""

    code = "psp_request_rejected"
    may_have_processed = False


class PspIdempotencyConflictError(PspProtocolError):
    """The PSP refused our idempotency key (our reference) as already used with another request
    (409/422 `idempotency_conflict`). Nothing was processed for THIS request, but the FIRST request
    with the key may have been — its outcome is unknown to us. So it is never a "not processed":
    another connector is never tried (that could charge twice); recovery asks the PSP by the
    reference (`inquire`)."""

    code = "psp_idempotency_conflict"
    default_message = "The payment service provider has already seen this reference; the outcome is unknown."
    may_have_processed = True


# What the PSPs answer (409, some 422) for an idempotency key reused with another body: the sandboxes'
# `idempotency_conflict`, and the names the big APIs use for it.
IDEMPOTENCY_CONFLICT_CODES = frozenset({"idempotency_conflict", "idempotency_key_in_use", "idempotency_error"})


class PspReferenceNotFoundError(PspError):
    """The PSP has no record of this reference: an authorization that never arrived."""

    code = "psp_reference_not_found"
    http_status = 404
    may_have_processed = False


class WebhookSignatureError(PspError):
    """A webhook whose signature is missing, malformed, stale or wrong: reject, never trust it."""

    type = "invalid_request_error"
    code = "webhook_signature_invalid"
    http_status = 400
    default_message = "The webhook signature could not be verified."
    may_have_processed = False


class WebhookPayloadError(PspError):
    """A correctly signed webhook whose content we cannot read."""

    type = "invalid_request_error"
    code = "webhook_payload_invalid"
    http_status = 400


class SettlementReportError(PspError):
    """The report file as a whole is unreadable (encoding, columns): nothing of it is imported."""

    type = "invalid_request_error"
    code = "settlement_report_invalid"
    http_status = 400
    may_have_processed = False


def _psp_code(response: httpx.Response) -> tuple[str, str]:
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", ""
    err = body.get("error") or body.get("errors") or body
    if isinstance(err, dict):
        return str(err.get("code") or err.get("errorCode") or ""), str(err.get("message") or "")
    return "", str(err)[:200]


def from_response(response: httpx.Response, *, connector: str) -> PspError:
    """Map a non-success HTTP answer to the typed error (as Sentry's `ApiError.from_response`).

    Both sandboxes (and the providers they stand for) roll back before answering 500/502/503,
    so those are "not processed"; 504 comes from a gateway that may have forwarded the request.
    """
    status = response.status_code
    code, message = storable(_psp_code(response))
    message = message or f"HTTP {status} from {connector}"
    cls: type[PspError]
    if status in (401, 403):
        cls = PspAuthenticationError
    elif status == 404:
        cls = PspReferenceNotFoundError
    elif status == 429 or status in (500, 502, 503):
        cls = PspUnavailableError
    elif status >= 500:  # 504 and the rest: a gateway may have forwarded it
        cls = PspTimeoutError
    elif status in (409, 422) and code in IDEMPOTENCY_CONFLICT_CODES:  # the key's first request may have been processed
        cls = PspIdempotencyConflictError
    elif 400 <= status < 500:
        cls = PspRequestRejectedError
    else:
        cls = PspProtocolError
    return cls(message, connector=connector, status_code=status, psp_code=code)


def from_transport_error(exc: httpx.HTTPError, *, connector: str) -> PspError:
    """Connect errors happen before a byte was sent: not processed. Anything after sending
    (read timeout, connection dropped mid-answer) leaves the outcome unknown."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol):
        return PspUnavailableError(f"{connector}: {name}", connector=connector)
    if isinstance(exc, httpx.TimeoutException):
        return PspTimeoutError(f"{connector}: {name}", connector=connector)
    return PspTimeoutError(f"{connector}: {name}: {exc}", connector=connector)


class PaymentMethodUnsupportedError(PspError):
    """The connector does not take this payment method or currency: nothing was sent.
    Routing should not have offered it (see `PspAdapter.capabilities`)."""

    type = "invalid_request_error"
    code = "payment_method_unsupported"
    http_status = 400
    may_have_processed = False


class PspConfigurationError(PspError):
    """A connector that is not configured (unknown name, missing credentials)."""

    code = "psp_not_configured"
    http_status = 500
    may_have_processed = False
