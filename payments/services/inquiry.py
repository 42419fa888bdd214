"""The one way to ask a PSP where an attempt stands (`attempt_inquire`).

A status inquiry is asked by the PSP's reference when we know one (else by our attempt id), and
that reference may be wrong: a webhook named our attempt with another payment's pspReference, a
PSP bug, a stored reference pointing at another authorization. The answer then describes ANOTHER
authorization, and recording it for our attempt would credit a capture the PSP never made for it
(or fail a capture it did make). So every inquiry of an attempt goes through here, and an answer
about another reference is refused: logged as an error and raised as
`InquiryReferenceMismatchError`, a `PspError` that says nothing was learned — every caller
already treats a `PspError` from an inquiry as "the PSP could not be asked now" (asked again
later, nothing recorded).
"""

from __future__ import annotations

import logging

from payera.core.db import outside_transaction
from payments.models import PaymentAttempt
from psp_adapters.errors import PspProtocolError
from psp_adapters.port import AuthorizeResult, PspReference
from psp_adapters.registry import get_adapter

logger = logging.getLogger("payera.payments")


class InquiryReferenceMismatchError(PspProtocolError):
    """The PSP answered an inquiry about another authorization than the attempt's: nothing about
    our attempt was learned (its state is not recorded)."""

    code = "psp_inquiry_reference_mismatch"
    default_message = "The payment service provider answered about another payment."

    def __init__(self, message: str | None = None, *, connector: str = "", answered: PspReference):
        super().__init__(message, connector=connector)
        self.answered = answered


def attempt_inquire(attempt: PaymentAttempt, *, connector: str | None = None,
                    psp_reference: str | None = None) -> AuthorizeResult:
    """Ask the attempt's PSP (or `connector`) about it, outside any transaction, by its stored PSP
    reference, else `psp_reference` (a webhook's hint), else our attempt id. Raises the adapter's
    `PspError`s, and `InquiryReferenceMismatchError` when the answer is about another reference
    (another merchant reference than the attempt's id, or another PSP reference than the one the
    attempt holds)."""
    connector = connector or attempt.connector
    asked = attempt.psp_reference or psp_reference or None
    with outside_transaction():
        result = get_adapter(connector).inquire(PspReference(attempt.id, asked))
    return _about_the_attempt(attempt, connector, asked, result)


def attempt_authentication_complete(attempt: PaymentAttempt) -> AuthorizeResult:
    """The shopper came back from 3-D Secure or the bank's page: the PSP's answer about where the
    attempt's authorization stands (`complete_authentication`, an inquiry for both sandboxes), with
    the same refusal of an answer about another reference as `attempt_inquire`."""
    asked = attempt.psp_reference or None
    with outside_transaction():
        result = get_adapter(attempt.connector).complete_authentication(PspReference(attempt.id, asked))
    return _about_the_attempt(attempt, attempt.connector, asked, result)


def _about_the_attempt(attempt: PaymentAttempt, connector: str, asked: str | None,
                       result: AuthorizeResult) -> AuthorizeResult:
    answered = result.payment
    other = answered.reference != attempt.id or bool(
        attempt.psp_reference and answered.psp_reference and answered.psp_reference != attempt.psp_reference
    )
    if other:
        logger.error(
            "inquiry of %s at %s (asked by pspReference %s) answered about %s (pspReference %s): refused",
            attempt.id, connector, asked, answered.reference, answered.psp_reference,
        )
        raise InquiryReferenceMismatchError(
            f"{connector} answered about {answered.reference} (pspReference {answered.psp_reference}), "
            f"not {attempt.id}", connector=connector, answered=answered,
        )
    return result
