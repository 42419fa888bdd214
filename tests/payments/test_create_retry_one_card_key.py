"""A repeated `POST /v1/payments` (the same Idempotency-Key, sent again while the first is running:
a client retrying after a lost answer) that saves the card must leave one card key, not two.

The card is tokenized before the payment's insert claims the key (the claim is made in that insert's
transaction, payments.api `idempotency_claim_with_work`): a card saved for later gets a data key of
its own in the secrets backend (crypto-shred on detach), created when it is encrypted. The request
that lost the claim rolled its insert back — no payment method holds its ciphertext — but its data
key stayed in the secrets backend, for ever: one more orphan key per retry (per crashed request,
too), which no detach can ever shred and every key rotation and backup carries.

Now a card key whose payment method did not commit is shredded at once: one key per effect.

Real PostgreSQL and threads: both requests are held at the payment method's insert (the table
locked by another transaction) after tokenizing, as when both arrive together; then let go.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from payera.secrets.models import DataKey
from payments.models import PaymentMethod
from tests.conftest import client_for
from tests.helpers import held_open
from tests.merchants.factories import MerchantFactory, make_api_key

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _waiting_on_locks() -> int:
    with connection.cursor() as c:
        c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return c.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_two_sends_of_one_saving_create_leave_one_card_key(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    secret = make_api_key(merchant).secret
    customer = client_for(secret).post("/v1/customers", {}, format="json").json()["id"]
    body = {
        "amount": 1000,
        "currency": "EUR",
        "payment_method_data": CARD,
        "customer": customer,
        "setup_future_usage": "off_session",
    }
    keys_before = set(DataKey.objects.filter(name__startswith="pan-").values_list("name", flat=True))
    answers: list[int] = []

    def send() -> None:
        try:
            r = client_for(secret).post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="save-once")
            answers.append(r.status_code)
        finally:
            connection.close()

    def lock() -> None:
        with connection.cursor() as c:
            c.execute(f"LOCK TABLE {PaymentMethod._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")

    threads = [threading.Thread(target=send) for _ in range(2)]
    with held_open(lock):
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while _waiting_on_locks() < 2 and time.monotonic() < deadline:  # both tokenized, at the insert
            time.sleep(0.05)
        assert _waiting_on_locks() == 2
    for t in threads:
        t.join(30)

    assert sorted(answers)[0] == 201, answers  # one payment; the other send: its replay or 409
    [pm] = PaymentMethod.objects.filter(merchant=merchant)
    new_keys = set(DataKey.objects.filter(name__startswith="pan-").values_list("name", flat=True)) - keys_before
    assert new_keys == {pm.pan_key}, f"{len(new_keys)} card keys for one saved card"
