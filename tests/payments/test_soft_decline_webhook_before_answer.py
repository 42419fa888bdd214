"""A PSP's webhook about a soft decline that arrives before the PSP's own answer does not end the
payment: the confirmation's answer cascades it to the next connector.

What was wrong: a PSP may send its authorization webhook before (or while) its HTTP answer reaches
us. The webhook's application (confirmed by a status inquiry) recorded the soft decline with
`may_cascade=False` — a webhook has no next connector — and so failed the payment while its
confirmation was still running. When the confirmation's answer was then recorded, the attempt
was already resolved ("stale"), the loop stopped, and the shopper got `failed` for a card the
merchant's second connector would have taken (card 4000000000000119: soft `processing_error` at
alpha, approved at beta). Now a soft decline for an attempt still `started` within
PAYMENTS_STARTED_GRACE_SECONDS (its confirmation's own answer is due) is parked: the answer
decides whether to cascade; a crashed confirmation's attempt (older than the grace) is settled
by the webhook as before.

Real HTTP to the alpha sandbox: the authorization is made at alpha with the attempt's reference
(the PSP's answer is held back from Payera, as if still in flight), and the webhook is alpha's
signed `authorization.updated` with alpha's own authorization object.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from payments.models import AS, PS, InboxStatus, Payment, PaymentAttempt
from payments.routing import AttemptVerdict
from payments.services import payment_create, psp_webhook_process, psp_webhook_receive
from payments.services.payments import _confirm_begin, attempt_record_outcome
from psp_adapters.alpha import webhooks as alpha_webhooks
from psp_adapters.port import AuthorizeRequest, CardData
from psp_adapters.registry import get_adapter
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

SOFT = "4000000000000119"  # alpha: soft processing_error; beta: approved


def _alpha_webhook(sandbox, attempt_id: str):
    data = get_adapter("alpha").api.find_authorization(attempt_id)
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "authorization.updated",
            "created": dt.datetime.now(dt.UTC).isoformat(),
            "data": data,
        }
    ).encode()
    headers = {"X-Alpha-Signature": alpha_webhooks.sign(body, sandbox.webhook_secret)}
    return psp_webhook_receive(connector="alpha", body=body, headers=headers)


def _softly_declined_at_alpha():
    """A payment of a merchant with connectors alpha then beta, its confirmation begun (an attempt at
    alpha) and its PSP call made: alpha declines softly, and its answer is still on its way to us.
    Returns `(payment, attempt, answer)`."""
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    payment = payment_create(
        merchant=merchant,
        amount=1000,
        currency="EUR",
        confirm=False,
        payment_method_data={"type": "card", "card": {"number": SOFT, "exp_month": 12, "exp_year": 2034, "cvc": "123"}},
    )
    plan, attempt = _confirm_begin(merchant=merchant, payment_id=payment.id, actor="api")
    assert plan == ["alpha", "beta"]
    answer = get_adapter("alpha").authorize(
        AuthorizeRequest(
            reference=attempt.id,
            amount=1000,
            currency="EUR",
            capture=True,
            payment_method=CardData(number=SOFT, exp_month=12, exp_year=2034, cvc="123"),
        )
    )
    assert answer.decline is not None and answer.decline.may_cascade
    return payment, attempt, answer


def test_a_soft_decline_webhook_ahead_of_the_answer_leaves_the_cascade_to_the_answer(psp_settings):
    payment, attempt, answer = _softly_declined_at_alpha()

    row = _alpha_webhook(psp_settings["alpha"], attempt.id)
    psp_webhook_process(webhook_id=row.pk)

    payment.refresh_from_db()
    assert payment.status == PS.PROCESSING and payment.inflight == "confirm"
    assert PaymentAttempt.objects.get(pk=attempt.id).status == AS.STARTED
    # the answer arrives: the confirmation cascades (the next attempt would go to beta)
    verdict = attempt_record_outcome(
        attempt_id=attempt.id, result=answer, actor="api", may_cascade=True, source="answer"
    )
    assert verdict == AttemptVerdict.SOFT_DECLINE
    assert Payment.objects.get(pk=payment.id).status == PS.PROCESSING
    # the parked webhook, applied later, finds the attempt resolved and changes nothing
    psp_webhook_process(webhook_id=row.pk)
    assert Payment.objects.get(pk=payment.id).status == PS.PROCESSING


def test_a_soft_decline_webhook_settles_a_crashed_confirmations_attempt(psp_settings, settings):
    """Past the grace period the confirmation's request is gone: the webhook settles it (failed),
    as recovery would."""
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    payment, attempt, _ = _softly_declined_at_alpha()

    row = _alpha_webhook(psp_settings["alpha"], attempt.id)
    psp_webhook_process(webhook_id=row.pk)

    assert Payment.objects.get(pk=payment.id).status == PS.FAILED
    row.refresh_from_db()
    assert row.status == InboxStatus.PROCESSED
