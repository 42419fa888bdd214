"""One inbox row whose applying raises (a stored event a newer release cannot read, a bug, a
deadlock) must not stop the PSP-webhook sweep for every other row.

`psp_webhook_process_due` applied the due rows in a loop that let any exception out: the row raising
came back in every sweep (still `received`, its tries never counted), and every row after it in the
list was never applied — beta's payments stuck in `processing` behind it, for good once the task's
own five retries were spent. Now a row that raises is logged and parked like an unconfirmed one
(backoff, then `failed` for operations after the last try), and the sweep goes on."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import InboxStatus, PspWebhook
from payments.services import psp_webhook_process_due
from payments.services.webhooks import event_to_json
from psp_adapters.port import Outcome, PspEvent, PspEventKind, PspReference

pytestmark = pytest.mark.django_db


def _void_row(event_id: str) -> PspWebhook:
    """A row applied at once without any PSP call: a dispute event stored without its dispute
    (ignored). It was a void event while voids were "recorded from the answer"; a void event is
    now confirmed by inquiry (tests/payments/test_void_failed_later.py), which this test is not
    about."""
    event = PspEvent(
        event_id=event_id,
        kind=PspEventKind.DISPUTE,
        outcome=Outcome.APPROVED,
        payment=PspReference("att_poison_neighbour", "BPX1"),
        amount=100,
        currency="EUR",
        occurred_at=dt.datetime.now(dt.UTC),
        operation_reference="vd_x",
    )
    return PspWebhook.objects.create(
        connector="beta", event_id=event_id, kind="dispute", reference="vd_x", body="{}", headers=event_to_json(event)
    )


def test_a_row_that_raises_is_parked_and_the_sweep_applies_the_others(settings):
    settings.PAYMENTS_WEBHOOK_PARK_MAX_TRIES = 2
    before = _void_row("BE-before")
    # stored by an older release: an outcome this one no longer knows (Outcome(...) raises ValueError)
    poison = PspWebhook.objects.create(
        connector="beta",
        event_id="BE-poison",
        kind="authorization",
        reference="att_x",
        body="{}",
        headers=event_to_json(
            PspEvent(
                event_id="BE-poison",
                kind=PspEventKind.AUTHORIZATION,
                outcome=Outcome.APPROVED,
                payment=PspReference("att_x", "BPX"),
                amount=100,
                currency="EUR",
                occurred_at=dt.datetime.now(dt.UTC),
            )
        )
        | {"outcome": "no_longer_known"},
    )
    after = _void_row("BE-after")

    psp_webhook_process_due()

    for row in (before, poison, after):
        row.refresh_from_db()
    assert before.status == after.status == InboxStatus.IGNORED  # applied, whatever the order
    assert poison.status == InboxStatus.PARKED and poison.tries == 1 and "ValueError" in poison.note

    PspWebhook.objects.filter(pk=poison.pk).update(next_try_at=dt.datetime.now(dt.UTC))
    psp_webhook_process_due()
    poison.refresh_from_db()
    assert poison.status == InboxStatus.FAILED and poison.tries == 2  # raised to operations
