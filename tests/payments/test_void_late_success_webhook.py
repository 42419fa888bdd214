"""An earlier void's late success, told while the PSP cannot be asked, is parked (session 19's review).

Voids are numbered per attempt (`PaymentAttempt.void_number`): a refused void moves the attempt to
its next number, so that cancelling again sends a new reference. A void webhook is a hint: its apply
asks the PSP (`cancel_recover(release=False)`), and a webhook about an EARLIER void whose verdict is
"pending" or "unknown" was ignored as stale news of a superseded void. Right for a refusal; wrong
when the inquiry failed ("unknown": the PSP could not be asked) and the event says the earlier void
SUCCEEDED — a PSP that reported the refusal and then carried the void out after all. Nothing else
asks about it (no cancel under way, so no claim for recovery's cancel step): the authorization was
voided at the PSP while the payment stayed `requires_capture` in Payera, capturable.

Now such an event is parked, applied when the inquiry answers: the payment canceled once. The
refusing and unavailable PSP is the stand-in for alpha over HTTP (outside the machine).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from ledger.models import Journal
from payera.events.models import Event
from payments.models import AS, PS, InboxStatus, Payment, PaymentAttempt, PspWebhook
from payments.services import payment_cancel, recovery_run
from payments.services.payments import PspOperationFailedError, void_reference
from payments.services.webhooks import psp_webhook_process, psp_webhook_process_due
from psp_adapters.errors import PspUnavailableError
from tests.payments.standin_alpha import alpha_void_webhook, authorized_at_standin
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = pytest.mark.django_db


def _count(merchant, kind: str) -> int:
    return Event.objects.filter(merchant_id=merchant.id, type=kind).count()


def _status(row: PspWebhook) -> str:
    return PspWebhook.objects.get(pk=row.pk).status


@pytest.mark.parametrize("first", ["refuse", "unavailable"])
def test_an_earlier_voids_late_success_is_parked_while_the_psp_cannot_be_asked(psp_settings, settings, first):
    """`first`: void 1 refused (listed failed), or answered "not processed" (503, not listed)."""
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings, voids=(first,)) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        with pytest.raises((PspOperationFailedError, PspUnavailableError)):  # void 1 not done: next, void 2
            payment_cancel(merchant=merchant, payment_id=payment.id)
        assert PaymentAttempt.objects.get(pk=attempt.id).void_number == 2
        assert Payment.objects.get(pk=payment.id).inflight == ""  # no cancel under way
        psp.inquiries_unavailable = True
        if first == "refuse":
            [auth] = psp.auths.values()
            [refusal] = [o for o in auth["operations"] if o["merchant_reference"] == void_reference(attempt.id)]
            # the refusal's own webhook, while the PSP cannot be asked: stale news, ignored (as before)
            refused = alpha_void_webhook(secret, "evt_void_1_failed", dict(refusal))
            psp_webhook_process(webhook_id=refused.pk)
            assert _status(refused) == InboxStatus.IGNORED

        # the PSP carries void 1 out after all, and says so while it cannot be asked
        done = psp.void_carry_out_late(void_reference(attempt.id))
        succeeded = alpha_void_webhook(secret, "evt_void_1_succeeded", done)
        note = psp_webhook_process(webhook_id=succeeded.pk)
        assert _status(succeeded) == InboxStatus.PARKED, note  # not lost: asked again later
        assert Payment.objects.get(pk=payment.id).status == PS.REQUIRES_CAPTURE

        psp.inquiries_unavailable = False  # the PSP answers again; the parked row is due
        PspWebhook.objects.filter(pk=succeeded.pk).update(next_try_at=timezone.now() - dt.timedelta(seconds=1))
        assert psp_webhook_process_due() == 1
        assert _status(succeeded) == InboxStatus.PROCESSED
        assert psp_webhook_process(webhook_id=succeeded.pk) == InboxStatus.PROCESSED  # a repeat changes nothing

        current = Payment.objects.get(pk=payment.id)
        assert (current.status, current.inflight) == (PS.CANCELED, "")
        assert current.attempts.get().status == AS.VOIDED
        assert _count(merchant, "payment.canceled") == 1
        assert _count(merchant, "payment.cancel_failed") == 0
        assert psp.void_references == [void_reference(attempt.id)]  # nothing more sent to the PSP
        # an authorization has no journal: voiding it posts nothing, however often it is told
        assert not Journal.objects.filter(reference__contains=attempt.id).exists()
        assert_ledger_sound()


def test_recoverys_cancel_step_records_an_earlier_voids_late_success_once(psp_settings, settings):
    """The same news with a cancel under way (void 2 pending at the PSP, its claim held): recovery's
    cancel step asks about the authorization, not only the current void — the PSP lists it voided
    (by void 1) and `_cancel_record` records a voided authorization whatever the void's number. The
    parked webhook, applied after, changes nothing."""
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings, voids=("refuse", "pending")) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        with pytest.raises(PspOperationFailedError):
            payment_cancel(merchant=merchant, payment_id=payment.id)
        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"  # void 2 pending at the PSP

        psp.inquiries_unavailable = True
        assert recovery_run(force=True)["cancels"] == 1  # cannot ask: the claim stays
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"
        done = psp.void_carry_out_late(void_reference(attempt.id))  # void 1 done after all
        succeeded = alpha_void_webhook(secret, "evt_void_1_succeeded", done)
        psp_webhook_process(webhook_id=succeeded.pk)
        assert _status(succeeded) == InboxStatus.PARKED

        psp.inquiries_unavailable = False
        recovery_run(force=True)
        PspWebhook.objects.filter(pk=succeeded.pk).update(next_try_at=timezone.now() - dt.timedelta(seconds=1))
        assert psp_webhook_process_due() == 1
        assert _status(succeeded) == InboxStatus.PROCESSED

        current = Payment.objects.get(pk=payment.id)
        assert (current.status, current.inflight) == (PS.CANCELED, "")
        assert current.attempts.get().status == AS.VOIDED
        assert _count(merchant, "payment.canceled") == 1
        assert _count(merchant, "payment.cancel_failed") == 0
        assert psp.void_references == [void_reference(attempt.id), void_reference(attempt.id, 2)]
        assert not Journal.objects.filter(reference__contains=attempt.id).exists()
        assert_ledger_sound()
