"""`Idempotency-Key` on POST /v1/payments, whose key is claimed in the payment's creating
transaction (`idempotency_claim_with_work`, docs/decisions/idempotency-claim-with-work.md):
the same answers as a claim committed before the handler (tests/idempotency/test_idempotency_api.py),
one effect per key, and no commit or statement of its own."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from payera.idempotency.models import IdempotencyKey, IdempotencyState
from payments.models import Payment, PaymentAttempt, PaymentMethod
from tests.conftest import client_for
from tests.helpers import race
from tests.merchants.factories import MerchantFactory, make_api_key

URL = "/v1/payments"
CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
BODY = {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}


def post(client, body, key="key-1"):
    return client.post(URL, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.fixture
def api(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    return merchant, client_for(make_api_key(merchant).secret)


@pytest.mark.django_db
def test_the_claim_is_inserted_with_the_payment_bound_to_it(api):
    from django.test.utils import CaptureQueriesContext

    merchant, client = api
    with CaptureQueriesContext(connection) as ctx:
        answer = post(client, BODY)
    assert answer.status_code == 201 and answer.json()["status"] == "succeeded"
    key = IdempotencyKey.objects.get(merchant=merchant, key="key-1")
    assert key.resource == answer.json()["id"] and key.state == IdempotencyState.COMPLETED
    assert bytes(key.response_body) == answer.content
    sqls = [q["sql"] for q in ctx.captured_queries]
    claim = next(i for i, s in enumerate(sqls) if s.startswith('INSERT INTO "idempotency_idempotencykey"'))
    payment = next(i for i, s in enumerate(sqls) if s.startswith('INSERT INTO "payments_payment"'))
    assert payment < claim  # in the payment's transaction, bound to it at once
    assert not any(s.startswith('UPDATE "idempotency_idempotencykey" SET "resource"') for s in sqls)


@pytest.mark.django_db
def test_a_repeat_replays_the_first_answer_and_does_nothing_again(api, psp_settings):
    merchant, client = api
    first = post(client, BODY)
    second = post(client, BODY)
    assert second.status_code == 201 and second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Payment.objects.filter(merchant=merchant).count() == 1
    assert PaymentMethod.objects.filter(merchant=merchant).count() == 1  # the repeat's insert rolled back
    attempt = PaymentAttempt.objects.get(payment_id=first.json()["id"])
    assert len(psp_settings["alpha"].payments(attempt.id)) == 1


@pytest.mark.django_db
def test_another_body_is_422_even_when_it_is_invalid(api):
    merchant, client = api
    assert post(client, BODY).status_code == 201
    for body in ({**BODY, "amount": 2000}, {**BODY, "amount": -1}):
        response = post(client, body)
        assert response.status_code == 422
        assert response.json()["error"]["type"] == "idempotency_error"
    assert Payment.objects.filter(merchant=merchant).count() == 1


@pytest.mark.django_db
def test_a_400_is_not_stored_so_the_key_can_be_used_again(api):
    merchant, client = api
    assert post(client, {**BODY, "amount": -1}).status_code == 400
    assert not IdempotencyKey.objects.filter(merchant=merchant).exists()
    assert post(client, BODY).status_code == 201


@pytest.mark.django_db
def test_an_error_that_wrote_nothing_is_stored_and_replayed(api):
    merchant, client = api
    body = {**BODY, "customer": "cus_nobody"}
    first = post(client, body)
    assert first.status_code == 404
    again = post(client, body)
    assert again.status_code == 404 and again["Idempotent-Replayed"] == "true" and again.content == first.content
    assert IdempotencyKey.objects.get(merchant=merchant).state == IdempotencyState.COMPLETED


@pytest.mark.django_db
def test_while_the_first_request_runs_a_repeat_is_409_and_writes_nothing(api):
    from payera.core.idempotency import fingerprint
    from payera.idempotency.services import Claim, idempotency_claim

    merchant, client = api
    claim = idempotency_claim(merchant_id=merchant.id, key="key-1", method="POST", path=URL,
                              fingerprint=fingerprint(method="POST", path=URL, body=json.dumps(BODY).encode()))
    assert isinstance(claim, Claim)
    response = post(client, BODY)
    assert response.status_code == 409 and response.json()["error"]["type"] == "idempotency_error"
    assert not Payment.objects.filter(merchant=merchant).exists()
    assert not PaymentMethod.objects.filter(merchant=merchant).exists()


@pytest.mark.django_db
def test_a_claim_whose_transaction_rolled_back_leaves_the_key_free(api, monkeypatch):
    """The claim row goes with its transaction: nothing was done, so nothing is stored (the
    answer's UPDATE finds no row) and the key may be used again."""
    from payments.services import payments as services

    merchant, client = api
    real = services._attempt_insert
    monkeypatch.setattr(services, "_attempt_insert", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("boom")))
    assert post(client, BODY).status_code == 500
    assert not IdempotencyKey.objects.filter(merchant=merchant).exists()
    assert not Payment.objects.filter(merchant=merchant).exists()
    monkeypatch.setattr(services, "_attempt_insert", real)
    retry = post(client, BODY)
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_with_one_key_make_exactly_one_payment(psp_settings):
    """Real concurrency on PostgreSQL: the repeats' inserts of the key wait on the unique index
    for the first transaction; they then roll back and answer 409 or the stored answer."""
    threads_n = 8
    merchant = MerchantFactory(connectors=["alpha"])
    secret = make_api_key(merchant).secret
    def one_post():
        response = post(client_for(secret), BODY, key="race")
        return response.status_code, response.content, response.get("Idempotent-Replayed")

    results = race(threads_n, one_post, timeout=120)
    [payment] = Payment.objects.filter(merchant=merchant)
    assert PaymentMethod.objects.filter(merchant=merchant).count() == 1
    [attempt] = PaymentAttempt.objects.filter(payment=payment)
    assert len(psp_settings["alpha"].payments(attempt.id)) == 1
    created = [r for r in results if r[0] == 201 and r[2] is None]
    assert len(created) == 1
    for status, content, replayed in results:
        if status == 409:
            assert json.loads(content)["error"]["type"] == "idempotency_error"
        else:
            assert status == 201 and content == created[0][1]
            assert replayed in (None, "true")
    replay = post(client_for(secret), BODY, key="race")
    assert replay["Idempotent-Replayed"] == "true" and replay.content == created[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_answer_is_stored_in_the_payments_last_transaction(psp_settings):
    """Two commits per payment: the claim with the payment and its first attempt, the answer with
    the outcome — nothing after the last COMMIT."""
    from django.test.utils import CaptureQueriesContext

    merchant = MerchantFactory(connectors=["alpha"])
    client = client_for(make_api_key(merchant).secret)
    post(client, BODY, key="warm-up")  # creates the data keys (commits of their own, once)
    with CaptureQueriesContext(connection) as ctx:
        answer = post(client, BODY)
    assert answer.status_code == 201 and answer.json()["status"] == "succeeded"
    sqls = [q["sql"] for q in ctx.captured_queries]
    last_commit = max(i for i, s in enumerate(sqls) if s == "COMMIT")
    stored = next(i for i, s in enumerate(sqls) if s.startswith('UPDATE "idempotency_idempotencykey"'))
    assert stored < last_commit
    assert not any(s.startswith(("UPDATE", "INSERT", "DELETE")) for s in sqls[last_commit + 1:])
    assert sum(1 for s in sqls if s == "COMMIT") == 2
    key = IdempotencyKey.objects.get(merchant=merchant, key="key-1")
    assert key.state == IdempotencyState.COMPLETED and bytes(key.response_body) == answer.content
    replay = post(client, BODY)
    assert replay["Idempotent-Replayed"] == "true" and replay.content == answer.content


@pytest.mark.django_db
@pytest.mark.parametrize(("number", "extra", "connectors", "status", "attempts"), [
    ("4242424242424242", {"capture_method": "manual"}, ["alpha"], "requires_capture", 1),
    ("4000000000009995", {}, ["alpha"], "failed", 1),  # hard decline
    ("4000000000003220", {}, ["alpha"], "requires_action", 1),  # 3-D Secure
    ("4000000000000119", {}, ["alpha", "beta"], None, 2),  # soft decline at alpha: cascades to beta
])
def test_whatever_the_outcome_the_stored_answer_is_the_answer(psp_settings, number, extra, connectors, status,
                                                              attempts):
    merchant = MerchantFactory(connectors=connectors)
    client = client_for(make_api_key(merchant).secret)
    body = {**BODY, "payment_method_data": {"type": "card", "card": {**CARD["card"], "number": number}}, **extra}
    answer = post(client, body)
    assert answer.status_code == 201
    assert len(answer.json()["attempts"]) == attempts
    if status is not None:
        assert answer.json()["status"] == status
    key = IdempotencyKey.objects.get(merchant=merchant, key="key-1")
    assert key.state == IdempotencyState.COMPLETED
    assert (key.response_status, key.response_content_type, bytes(key.response_body)) == (
        201, answer["Content-Type"], answer.content)
    assert post(client, body).content == answer.content


@pytest.mark.django_db
def test_a_final_answer_other_than_the_one_stored_in_the_work_replaces_it(merchant):
    """`idempotency_end` stores nothing when the final answer is the one stored in the work's
    transaction, and replaces it when it differs (only this request's own)."""
    from django.http import HttpResponse
    from django.test.utils import CaptureQueriesContext

    from payera.core.idempotency import idempotency_end
    from payera.idempotency.services import Claim, _store_answer, idempotency_claim

    claim = idempotency_claim(merchant_id=merchant.id, key="k", fingerprint="f", method="POST", path=URL)
    assert isinstance(claim, Claim)
    _store_answer(claim, status=201, content_type="application/json", body=b'{"a":1}', encrypted=False)
    stored = (201, "application/json", b'{"a":1}')
    with CaptureQueriesContext(connection) as ctx:
        idempotency_end(claim=claim, response=HttpResponse(b'{"a":1}', status=201, content_type="application/json"),
                        stored=stored)
    assert ctx.captured_queries == []
    idempotency_end(claim=claim, response=HttpResponse(b'{"a":2}', status=201, content_type="application/json"),
                    stored=stored)
    assert bytes(IdempotencyKey.objects.get(pk=claim.row_id).response_body) == b'{"a":2}'
