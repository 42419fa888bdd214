"""The sandbox's chaos mode (bench/load): 5xx before processing, answers held past the adapter's
timeout after processing, webhooks sent twice and late. Off by default and when set to `{}`."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
import pytest

CARD_ALPHA = {"number": "4242424242424242", "expiry_month": 12, "expiry_year": 2034, "cvc": "123"}


def alpha_authorize(sb, reference: str, *, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(
        sb.url + "/v1/authorizations",
        headers=sb._auth(),
        timeout=timeout,
        json={"merchant_reference": reference, "amount": 1000, "currency": "EUR", "capture": False,
              "initiator": "customer", "store_card": False, "description": "", "metadata": {},
              "card": CARD_ALPHA},
    )


def beta_create(sb, reference: str) -> httpx.Response:
    return httpx.post(
        sb.url + "/api/payments",
        headers=sb._auth(),
        timeout=5,
        json={"reference": reference, "amount": {"value": "10.00", "currency": "EUR"},
              "paymentMethod": {"type": "scheme", "number": "4242424242424242", "expiryMonth": "12",
                                "expiryYear": "2034", "cvc": "123"}},
    )


def set_chaos(sb, chaos: dict) -> dict:
    r = httpx.put(sb.url + "/_sandbox/config", headers=sb._auth(), json={"chaos": chaos})
    r.raise_for_status()
    return r.json()


@pytest.fixture
def chaotic(sandboxes):
    yield sandboxes
    for sb in sandboxes.values():
        set_chaos(sb, {})


def test_default_is_no_chaos(sandboxes):
    cfg = httpx.get(sandboxes["alpha"].url + "/_sandbox/config", headers=sandboxes["alpha"]._auth()).json()
    assert cfg["chaos"] == {}
    for _ in range(5):
        assert alpha_authorize(sandboxes["alpha"], f"att_{uuid.uuid4().hex}").status_code in (200, 201)


def test_bad_chaos_config_is_400(chaotic):
    sb = chaotic["alpha"]
    r = httpx.put(sb.url + "/_sandbox/config", headers=sb._auth(), json={"chaos": {"explode_rate": 1}})
    assert r.status_code == 400
    r = httpx.put(sb.url + "/_sandbox/config", headers=sb._auth(), json={"chaos": {"error_rate": "x"}})
    assert r.status_code == 400


def test_error_rate_answers_5xx_before_processing(chaotic):
    sb = chaotic["alpha"]
    set_chaos(sb, {"error_rate": 1})
    reference = f"att_{uuid.uuid4().hex}"
    r = alpha_authorize(sb, reference)
    assert r.status_code == 503
    assert sb.payments(reference) == []  # nothing was processed
    assert set_chaos(sb, {})["chaos_counts"]["errors"] >= 1
    assert alpha_authorize(sb, reference).status_code in (200, 201)
    assert len(sb.payments(reference)) == 1


def test_timeout_rate_processes_then_answers_too_late(chaotic):
    sb = chaotic["alpha"]
    set_chaos(sb, {"timeout_rate": 1, "timeout_seconds": 1.5})
    reference = f"att_{uuid.uuid4().hex}"
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        alpha_authorize(sb, reference, timeout=0.5)
    assert time.monotonic() - started < 1.4
    [row] = sb.payments(reference)  # processed although the client saw no answer
    assert row["state"] == "authorized"
    set_chaos(sb, {})
    again = alpha_authorize(sb, reference)  # the retry with the same reference gets the same one
    assert again.json()["id"] == row["id"]
    assert len(sb.payments(reference)) == 1


def test_webhooks_duplicated_and_late(chaotic, psp_webhooks):
    sb = chaotic["beta"]
    set_chaos(sb, {"duplicate_webhook_rate": 1, "late_webhook_seconds": 0.5})
    reference = f"att_{uuid.uuid4().hex}"
    assert beta_create(sb, reference).status_code in (200, 201, 202)
    [row] = sb.payments(reference)

    def copies() -> Counter:
        seen = Counter()
        for hook in list(psp_webhooks.received):
            if hook.path == "/beta" and row["id"].encode() in hook.body:
                seen[hook.body] += 1  # the same event (same id, same signature) twice
        return seen

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(n >= 2 for n in copies().values()):
        time.sleep(0.1)
    assert any(n == 2 for n in copies().values()), copies()
    counts = set_chaos(sb, {})["chaos_counts"]
    assert counts["duplicate_webhooks"] >= 1 and counts["late_webhooks"] >= 1
