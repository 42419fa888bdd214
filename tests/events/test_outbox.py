"""The outbox: recorded in the caller's transaction, relayed once, swept, pruned."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from payera.core.errors import InvalidRequestError, NotFoundError
from payera.events import clock
from payera.events.models import Event, WebhookDelivery
from payera.events.selectors import event_get, event_list
from payera.events.services import (
    event_prune,
    event_record,
    event_relay,
    event_relay_pending,
    webhook_endpoint_create,
    webhook_endpoint_update,
)
from tests.events.helpers import record

M = "mer_outbox"
URL = "http://127.0.0.1:9/hook"


@pytest.mark.django_db(transaction=True)
def test_event_record_refuses_to_run_outside_a_transaction():
    with pytest.raises(RuntimeError):
        event_record(merchant_id=M, type="payment.succeeded", data={})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"merchant_id": "", "type": "payment.succeeded", "data": {}}, "merchant_id"),
        ({"merchant_id": M, "type": "Payment Succeeded", "data": {}}, "type"),
        ({"merchant_id": M, "type": "payment", "data": {}}, "type"),
        ({"merchant_id": M, "type": "payment.succeeded", "data": ["x"]}, "data"),
        ({"merchant_id": M, "type": "payment.succeeded", "data": {"at": object()}}, "data"),
        ({"merchant_id": M, "type": "payment.succeeded", "data": {"x": float("nan")}}, "data"),
    ],
)
def test_event_record_validates_its_input(kwargs, param):
    with pytest.raises(InvalidRequestError) as exc:
        event_record(**kwargs)
    assert exc.value.param == param


@pytest.mark.django_db
def test_event_payload_is_the_contract_shape_and_the_relay_is_queued_on_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        event = record(M, "payment.succeeded", {"id": "pay_1", "object": "payment", "amount": 1000})
    assert len(callbacks) == 1
    payload = event.to_payload()
    assert payload == {
        "id": event.id,
        "object": "event",
        "type": "payment.succeeded",
        "api_version": event.api_version,
        "created": int(event.created_at.timestamp()),
        "data": {"object": {"id": "pay_1", "object": "payment", "amount": 1000}},
    }
    assert event.id.startswith("evt_")


@pytest.mark.django_db
def test_rolled_back_event_leaves_nothing_to_relay(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            event_record(merchant_id=M, type="payment.failed", data={})
            1 / 0  # noqa: B018
    assert callbacks == [] and not Event.objects.exists()


@pytest.mark.django_db
def test_relay_fans_out_once_to_enabled_endpoints_listening_for_the_type(enqueued):
    everything = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"]).endpoint
    payments = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["payment.*"]).endpoint
    refunds = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["refund.succeeded"]).endpoint
    off = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"]).endpoint
    webhook_endpoint_update(merchant_id=M, endpoint_id=off.pk, status="disabled")
    webhook_endpoint_create(merchant_id="mer_other", url=URL, enabled_events=["*"])

    event = record(M, "payment.captured")
    ids = event_relay(event_id=event.id)
    assert len(ids) == 2
    assert set(WebhookDelivery.objects.filter(event=event).values_list("endpoint_id", flat=True)) == {
        everything.pk,
        payments.pk,
    }
    assert refunds.pk not in ids
    assert event_relay(event_id=event.id) == []  # relayed already: run twice, fan out once
    assert WebhookDelivery.objects.filter(event=event).count() == 2
    event.refresh_from_db()
    assert event.relayed_at is not None


@pytest.mark.django_db
def test_sweep_relays_only_committed_unrelayed_events_past_the_grace_period(enqueued, monkeypatch):
    webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    old, fresh = record(M), record(M)
    Event.objects.filter(pk=old.pk).update(created_at=clock.now() - timedelta(minutes=1))
    relayed_already = record(M)
    event_relay(event_id=relayed_already.id)

    assert event_relay_pending(min_age_seconds=10) == 1
    assert WebhookDelivery.objects.filter(event_id=old.pk).count() == 1
    assert not WebhookDelivery.objects.filter(event_id=fresh.pk).exists()
    assert event_relay_pending(min_age_seconds=0) == 1  # fresh one now
    assert event_relay_pending(min_age_seconds=0) == 0
    assert WebhookDelivery.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_sweep_skips_an_event_locked_by_another_relay_instead_of_waiting(enqueued):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is a PostgreSQL feature")
    webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    locked, free = record(M), record(M)
    holding, release = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            list(Event.objects.select_for_update().filter(pk=locked.pk))
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        assert holding.wait(5)
        assert event_relay_pending(min_age_seconds=0) == 1  # did not block on the locked row
        assert event_relay(event_id=locked.id) == []
    finally:
        release.set()
        thread.join()
    assert WebhookDelivery.objects.filter(event_id=free.pk).count() == 1
    assert event_relay_pending(min_age_seconds=0) == 1
    assert WebhookDelivery.objects.filter(event_id=locked.pk).count() == 1


@pytest.mark.django_db
def test_prune_removes_events_older_than_the_retention_period(enqueued):
    webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    old, kept = record(M), record(M)
    event_relay(event_id=old.id)
    Event.objects.filter(pk=old.pk).update(created_at=clock.now() - timedelta(days=31))
    Event.objects.filter(pk=kept.pk).update(created_at=clock.now() - timedelta(days=29))
    assert event_prune() == 1
    assert list(Event.objects.values_list("id", flat=True)) == [kept.pk]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_selectors_scope_events_to_their_merchant_newest_first():
    first = record(M, "payment.succeeded")
    second = record(M, "refund.succeeded")
    theirs = record("mer_other", "payment.succeeded")
    Event.objects.filter(pk=first.pk).update(created_at=clock.now() - timedelta(seconds=5))
    assert list(event_list(merchant_id=M)) == [second, first]
    assert list(event_list(merchant_id=M, type="payment.*")) == [first]
    assert list(event_list(merchant_id=M, type="refund.succeeded")) == [second]
    assert event_get(merchant_id=M, event_id=first.pk) == first
    with pytest.raises(NotFoundError) as exc:
        event_get(merchant_id=M, event_id=theirs.pk)
    assert exc.value.http_status == 404 and exc.value.param == "id"


@pytest.mark.django_db
def test_events_recorded_together_are_one_insert_and_one_publish_and_each_is_relayed(
    enqueued, django_capture_on_commit_callbacks, django_assert_num_queries
):
    from payera.events import tasks
    from payera.events.services import event_record_many

    webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    data = {"id": "pay_2", "object": "payment", "status": "succeeded"}
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with django_assert_num_queries(1):
            captured, succeeded = event_record_many(merchant_id=M, types=["payment.captured", "payment.succeeded"],
                                                    data=data)
        data["status"] = "changed"  # frozen at recording
    assert enqueued == [("event_relay_batch_task", (captured.id, succeeded.id), None)]
    assert [e.type for e in Event.objects.filter(merchant_id=M).order_by("created_at")] == [
        "payment.captured", "payment.succeeded"]
    assert Event.objects.get(pk=succeeded.id).data == {"object": {**data, "status": "succeeded"}}
    assert tasks.event_relay_batch_task.run(captured.id, succeeded.id) == 2  # a delivery each
    assert WebhookDelivery.objects.filter(event_id__in=[captured.id, succeeded.id]).count() == 2
    assert tasks.event_relay_batch_task.run(captured.id, succeeded.id) == 0  # relayed once
