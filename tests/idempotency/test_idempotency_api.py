"""`Idempotency-Key` semantics of the contract, through POST /v1/customers."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from payera.idempotency.models import IdempotencyKey, IdempotencyState
from payments.models import Customer

pytestmark = pytest.mark.django_db

URL = "/v1/customers"


def post(client, body, key="key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers, **extra)


def test_same_key_same_body_replays_the_first_answer_and_does_nothing_again(merchant_client, merchant):
    first = post(merchant_client, {"email": "a@example.com", "metadata": {"order": "1"}})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    second = post(merchant_client, {"email": "a@example.com", "metadata": {"order": "1"}})
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_json_key_order_and_whitespace_do_not_change_the_fingerprint(merchant_client, merchant):
    first = merchant_client.post(
        URL, data='{"email": "a@example.com", "name": "A"}', content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    second = merchant_client.post(
        URL, data='{"name":"A","email":"a@example.com"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_same_key_different_body_is_422_idempotency_error(merchant_client, merchant):
    assert post(merchant_client, {"email": "a@example.com"}).status_code == 201
    response = post(merchant_client, {"email": "b@example.com"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "idempotency_error"
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_without_a_key_every_post_acts(merchant_client, merchant):
    post(merchant_client, {"name": "x"}, key=None)
    post(merchant_client, {"name": "x"}, key=None)
    assert Customer.objects.filter(merchant=merchant).count() == 2


def test_keys_are_per_merchant(make_merchant_client):
    m1, c1 = make_merchant_client()
    m2, c2 = make_merchant_client()
    r1 = post(c1, {"name": "x"}, key="shared")
    r2 = post(c2, {"name": "y"}, key="shared")
    assert r1.status_code == r2.status_code == 201
    assert "Idempotent-Replayed" not in r2
    assert r1.json()["id"] != r2.json()["id"]


def test_a_400_is_not_stored_so_the_key_can_be_used_again_corrected(merchant_client, merchant):
    bad = post(merchant_client, {"email": "not-an-email"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert not IdempotencyKey.objects.filter(merchant=merchant).exists()
    good = post(merchant_client, {"email": "ok@example.com"})
    assert good.status_code == 201
    assert "Idempotent-Replayed" not in good
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_a_5xx_after_work_began_is_stored_and_replayed(monkeypatch, merchant_client, merchant):
    calls = []

    def boom(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("database exploded: SELECT secret FROM t")

    monkeypatch.setattr("payments.api.customers.customer_create", boom)
    first = post(merchant_client, {"name": "x"})
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "api_error"
    assert b"SELECT" not in first.content and b"Traceback" not in first.content
    second = post(merchant_client, {"name": "x"})
    assert second.status_code == 500
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert len(calls) == 1


def test_while_the_first_request_runs_a_repeat_is_409(merchant_client, merchant):
    from payera.core.idempotency import fingerprint
    from payera.idempotency.services import Claim, idempotency_claim

    body = {"name": "x"}
    claim = idempotency_claim(
        merchant_id=merchant.id,
        key="key-1",
        fingerprint=fingerprint(method="POST", path=URL, body=json.dumps(body).encode()),
        method="POST",
        path=URL,
    )
    assert isinstance(claim, Claim)
    response = post(merchant_client, body)
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "idempotency_error"
    assert not Customer.objects.filter(merchant=merchant).exists()


def test_a_crashed_requests_claim_is_released_after_the_lock_timeout(merchant_client, merchant):
    from payera.core.idempotency import fingerprint
    from payera.idempotency.services import idempotency_claim, idempotency_complete

    body = {"name": "x"}
    crashed = idempotency_claim(
        merchant_id=merchant.id,
        key="key-1",
        fingerprint=fingerprint(method="POST", path=URL, body=json.dumps(body).encode()),
        method="POST",
        path=URL,
    )
    assert post(merchant_client, body).status_code == 409  # lock still running
    IdempotencyKey.objects.filter(pk=crashed.row_id).update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    retry = post(merchant_client, body)
    assert retry.status_code == 201
    assert Customer.objects.filter(merchant=merchant).count() == 1
    # The crashed request, if it ever comes back, can no longer overwrite the retry's answer.
    assert idempotency_complete(claim=crashed, status=500, content_type="application/json", body=b"{}") is False
    replay = post(merchant_client, body)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == retry.content


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\nkey"])
def test_a_malformed_key_is_400(merchant_client, merchant, key):
    response = post(merchant_client, {"name": "x"}, key=key)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert not Customer.objects.filter(merchant=merchant).exists()


def test_a_255_character_key_is_accepted(merchant_client):
    key = "k" * 255
    assert post(merchant_client, {"name": "x"}, key=key).status_code == 201
    assert post(merchant_client, {"name": "x"}, key=key)["Idempotent-Replayed"] == "true"


def test_gets_ignore_the_key(merchant_client):
    assert merchant_client.get(URL, HTTP_IDEMPOTENCY_KEY="x" * 300).status_code == 200


def test_rejected_auth_or_scope_claims_nothing(make_merchant_client, merchant_client):
    merchant, read_client = make_merchant_client(scope="read")
    assert post(read_client, {"name": "x"}).status_code == 403
    assert not IdempotencyKey.objects.filter(merchant=merchant).exists()


def test_keys_expire_after_the_retention_and_are_pruned(settings, merchant_client, merchant):
    from payera.idempotency.services import idempotency_prune
    from payera.idempotency.tasks import idempotency_prune_task

    settings.IDEMPOTENCY_KEY_TTL = 24 * 3600
    assert post(merchant_client, {"name": "old"}, key="old").status_code == 201
    assert post(merchant_client, {"name": "new"}, key="new").status_code == 201
    IdempotencyKey.objects.filter(merchant=merchant, key="old").update(
        created_at=timezone.now() - dt.timedelta(hours=24, seconds=1)
    )
    IdempotencyKey.objects.filter(merchant=merchant, key="new").update(
        created_at=timezone.now() - dt.timedelta(hours=23, minutes=59)
    )
    # Still within 24 h: replayed.
    assert post(merchant_client, {"name": "new"}, key="new")["Idempotent-Replayed"] == "true"
    assert idempotency_prune_task.apply().get() == 1
    assert list(IdempotencyKey.objects.filter(merchant=merchant).values_list("key", flat=True)) == ["new"]
    assert idempotency_prune() == 0
    # The pruned key is fresh again: it acts, with any body.
    again = post(merchant_client, {"name": "other"}, key="old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert Customer.objects.filter(merchant=merchant).count() == 3


def test_an_expired_but_not_yet_pruned_key_is_fresh(merchant_client, merchant):
    assert post(merchant_client, {"name": "a"}).status_code == 201
    IdempotencyKey.objects.filter(merchant=merchant).update(created_at=timezone.now() - dt.timedelta(days=2))
    again = post(merchant_client, {"name": "b"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    row = IdempotencyKey.objects.get(merchant=merchant)
    assert row.state == IdempotencyState.COMPLETED


def test_pruning_is_scheduled_by_beat(settings):
    from payera.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["idempotency-prune"]
    assert entry["task"] == "payera.idempotency.tasks.idempotency_prune_task"
    assert entry["schedule"] <= 24 * 3600
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks


def test_same_key_on_another_path_or_query_is_422(merchant_client):
    assert post(merchant_client, {"name": "x"}).status_code == 201
    other = merchant_client.post(
        URL + "?expand=x", data=json.dumps({"name": "x"}), content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_key_taken_over_near_its_retention_is_neither_reset_nor_pruned_while_its_request_runs(
    settings, merchant_client, merchant
):
    """A request crashed; its retry took the claim over shortly before the key's 24 hours were up
    (the take-over keeps the key's `created_at`) and is still running when they are. A further
    retry with the key found it "past retention" and reset it: a second, concurrent run of the
    request — a second effect for one key. And the hourly prune deleted the running request's row,
    so its answer was never stored and the next retry ran the request again too. While a request
    holds the key's lock, the key is neither fresh again nor pruned."""
    from payera.core.idempotency import fingerprint
    from payera.idempotency.services import Claim, idempotency_claim, idempotency_complete, idempotency_prune

    settings.IDEMPOTENCY_KEY_TTL = 24 * 3600
    body = {"name": "x"}
    args = {"merchant_id": merchant.id, "key": "key-1", "method": "POST", "path": URL,
            "fingerprint": fingerprint(method="POST", path=URL, body=json.dumps(body).encode())}
    crashed = idempotency_claim(**args)
    IdempotencyKey.objects.filter(pk=crashed.row_id).update(
        created_at=timezone.now() - dt.timedelta(hours=24) + dt.timedelta(seconds=30),
        locked_until=timezone.now() - dt.timedelta(seconds=1),
    )
    retry = idempotency_claim(**args)  # takes the crashed claim over: it runs now
    assert isinstance(retry, Claim) and retry.owner != crashed.owner
    # a minute later the key's 24 hours are up; the retry is still running
    IdempotencyKey.objects.filter(pk=retry.row_id).update(
        created_at=timezone.now() - dt.timedelta(hours=24, seconds=30)
    )
    third = post(merchant_client, body)
    assert third.status_code == 409, third.content
    assert not Customer.objects.filter(merchant=merchant).exists()
    assert idempotency_prune() == 0
    assert idempotency_complete(claim=retry, status=201, content_type="application/json", body=b"{}") is True
