"""A refund the PSP answers as returned (`OperationResult.returned`) is recorded succeeded, then
reversed, in one transaction (review r19b of h19d): racing itself (a webhook's inquiry and
recovery's at once) and a stale "done", with real threads on PostgreSQL, each journal is posted
once and the refund ends reversed with both of its times."""

from __future__ import annotations

from unittest import mock

import pytest

from ledger.models import Journal
from payments.models import OperationStatus, Payment, Refund
from payments.services import payment_create, refund_create
from payments.services.refunds import refund_record_outcome
from psp_adapters.alpha.adapter import AlphaAdapter
from psp_adapters.errors import PspTimeoutError
from psp_adapters.port import Outcome
from tests.payments.test_concurrency import CARD, _race, merchant_alpha  # noqa: F401  (the fixture)
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("rounds", [3])
def test_returned_news_racing_itself_and_a_stale_done_posts_each_journal_once(merchant_alpha, rounds):  # noqa: F811
    for _ in range(rounds):
        payment = payment_create(merchant=merchant_alpha, amount=1000, currency="EUR", payment_method_data=CARD)
        assert payment.status == "succeeded"
        with mock.patch.object(AlphaAdapter, "refund", side_effect=PspTimeoutError("timeout")):
            refund = refund_create(merchant=merchant_alpha, payment_id=payment.id, amount=400)
        assert refund.status == OperationStatus.PENDING

        def news(i: int, refund_id: str = refund.id) -> None:
            returned = i % 3 != 2
            refund_record_outcome(
                refund_id=refund_id,
                outcome=Outcome.DECLINED if returned else Outcome.APPROVED,
                returned=returned,
                actor=f"t{i}",
            )

        results = _race(6, news)
        assert results == [None] * 6, results
        r = Refund.objects.get(pk=refund.id)
        assert r.status == OperationStatus.FAILED
        assert r.succeeded_at is not None and r.reversed_at is not None and r.succeeded_at <= r.reversed_at
        for ref in (f"refund:{r.id}", f"refund_reversal:{r.id}"):
            assert Journal.objects.filter(reference=ref).count() == 1
        assert Payment.objects.get(pk=payment.id).amount_refunded == 0
    assert_ledger_sound()
