"""A PSP webhook that another worker finished is never parked or failed again (session 14's review,
14d: `_park` updated the row whatever its status, unlike `_refuse`).

Two workers can hold the same inbox row: the relay's redelivery and the parked-row sweep, say. When
one applies the event (`processed`) while the other, working from its older copy of the row, parks
it ("not confirmed yet"), the row went back to `parked`: processed again later (harmless: the
appliers are idempotent) or, after the last try, `failed` — raised to operations for an event that
was applied."""

from __future__ import annotations

import pytest

from payments.models import InboxStatus, PspWebhook
from payments.services.webhooks import _park

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("finished", [InboxStatus.PROCESSED, InboxStatus.IGNORED, InboxStatus.FAILED])
@pytest.mark.parametrize("tries", [0, 9])  # a next try, then the last one (PAYMENTS_WEBHOOK_PARK_MAX_TRIES 10)
def test_a_finished_row_stays_finished_when_a_stale_worker_parks_it(finished, tries, settings):
    settings.PAYMENTS_WEBHOOK_PARK_MAX_TRIES = 10
    row = PspWebhook.objects.create(
        connector="alpha", event_id=f"evt_park_{finished}_{tries}", kind="capture", reference="cap_x", body="{}",
        tries=tries,
    )
    stale = PspWebhook.objects.get(pk=row.pk)  # the second worker's copy, read while it was received
    PspWebhook.objects.filter(pk=row.pk).update(status=finished, note="applied by the first worker")

    _park(stale, "not confirmed yet: the inquiry failed (timeout)")

    row.refresh_from_db()
    assert (row.status, row.note, row.tries) == (finished, "applied by the first worker", tries)


def test_a_row_not_finished_is_parked_then_failed_after_the_last_try(settings):
    settings.PAYMENTS_WEBHOOK_PARK_MAX_TRIES = 2
    row = PspWebhook.objects.create(connector="alpha", event_id="evt_park_open", kind="capture", body="{}")
    assert _park(row, "unknown attempt att_x") == "parked"
    row.refresh_from_db()
    assert (row.status, row.tries) == (InboxStatus.PARKED, 1) and row.next_try_at is not None
    assert _park(row, "unknown attempt att_x") == "failed"
    row.refresh_from_db()
    assert (row.status, row.tries) == (InboxStatus.FAILED, 2)
