"""End to end: Payera served by `live_server` (real HTTP), the sandbox PSPs as real processes
posting their webhooks to it, a merchant routing alpha then beta.

The Celery worker's part (applying stored PSP webhooks) is played by `drain()`, which calls the
same service the task calls; tests/scenarios/test_worker.py runs it with a real worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from ledger.selectors import balance_get
from ledger.verify import ledger_verify
from payments.services import psp_webhook_process_due
from tests.merchants.factories import MerchantFactory, make_api_key


@dataclass
class Env:
    url: str
    merchant: object
    http: httpx.Client
    sandboxes: dict

    def pay(self, number: str = "4242424242424242", *, amount: int = 1000, currency: str = "EUR",
            expect: int = 201, **extra) -> dict:
        body = {
            "amount": amount, "currency": currency,
            "payment_method_data": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                                              "cvc": "123"}},
            **extra,
        }
        r = self.http.post("/v1/payments", json=body)
        assert r.status_code == expect, r.text
        return r.json()

    def get(self, payment_id: str) -> dict:
        r = self.http.get(f"/v1/payments/{payment_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: dict | None = None, expect: int | None = 200) -> dict:
        r = self.http.post(path, json=body or {})
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json()

    def wait(self, payment_id: str, pred: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """Play the worker (apply stored webhooks) until the payment satisfies `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            psp_webhook_process_due()
            p = self.get(payment_id)
            if pred(p):
                return p
            if time.monotonic() > deadline:
                raise AssertionError(f"payment never matched: {p}")
            time.sleep(0.1)

    def balance(self) -> dict:
        r = self.http.get("/v1/balance")
        assert r.status_code == 200
        return r.json()


def pending_eur(env: Env) -> int:
    b = balance_get(owner=env.merchant.id)
    return sum(m.amount for m in b.pending if m.currency == "EUR")


def assert_ledger_sound() -> None:
    report = ledger_verify()
    assert report.ok, report.problems


def fee(gross: int) -> int:
    """The `standard` card fee: 2.9 % + 0.30 (settings.PAYMENT_FEE_SCHEDULES)."""
    return (gross * 290 + 5000) // 10000 + 30


@pytest.fixture
def held(env):
    """Beta's webhooks held back (stored at the sandbox, not sent): the test delivers them. The beta
    sandbox, webhooks sent again after the test."""
    sb = env.sandboxes["beta"]
    sb.set_webhook_url("")
    yield sb
    sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")


@pytest.fixture
def env(psp_settings, psp_webhooks, live_server, settings, transactional_db):
    settings.PAYERA_PUBLIC_URL = live_server.url
    sandboxes = psp_settings
    for name, sb in sandboxes.items():
        sb.set_webhook_url(f"{live_server.url}/webhooks/psp/{name}/")
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    key = make_api_key(merchant)
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key.secret}"},
                      timeout=30) as http:
        yield Env(url=live_server.url, merchant=merchant, http=http, sandboxes=sandboxes)
    for name, sb in sandboxes.items():  # back to the session's receiver
        sb.set_webhook_url(f"{psp_webhooks.url}/{name}")
