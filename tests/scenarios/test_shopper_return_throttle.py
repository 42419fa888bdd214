"""The shopper's return URL asks the PSP at most once per interval for one attempt.

What was wrong: `GET /payments/return/<payment id>` needs no authentication (the shopper's browser
comes back through it) and asked the PSP about the attempt on every hit while the payment waited
for 3-D Secure or the bank's page. Anyone holding that URL (it passes through the shopper's browser
and the PSP's pages) could hammer it and turn each hit into a call to the PSP's API under Payera's
credentials: enough of them and the PSP rate-limits Payera's account, declining or delaying every
merchant's payments there. Now one attempt is asked about at most once per
`RETURN_INQUIRY_INTERVAL_SECONDS`; a hit inside the interval shows the payment as it stands
(a webhook, recovery or the next return settles it). Real HTTP to the live server and the sandbox;
the adapter's call is only counted, never replaced."""

from __future__ import annotations

import time

import httpx
import pytest

from payments.services import webhooks as webhooks_module
from psp_adapters.registry import get_adapter

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_hammered_return_url_asks_the_psp_once_per_interval_and_a_later_return_completes(env, monkeypatch):
    p = env.pay("4000000000003220", return_url="https://shop.example/done")
    assert p["status"] == "requires_action"
    connector = p["attempts"][-1]["connector"]
    adapter = get_adapter(connector)
    asked: list[str] = []
    real = type(adapter).complete_authentication

    def counted(self, reference):
        asked.append(reference.reference)
        return real(self, reference)

    monkeypatch.setattr(type(adapter), "complete_authentication", counted)
    back = f"{env.url}/payments/return/{p['id']}"
    started = time.monotonic()
    for _ in range(20):
        r = httpx.get(back, follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].startswith("https://shop.example/done?payment=")
    took = time.monotonic() - started
    allowed = 1 + int(took // webhooks_module.RETURN_INQUIRY_INTERVAL_SECONDS)  # once per interval begun
    assert len(asked) <= allowed < 20, f"the PSP was asked {len(asked)} times for 20 hits in {took:.1f} s"
    assert env.get(p["id"])["status"] == "requires_action"

    # the shopper passes the challenge and comes back after the interval: the return completes it
    url = env.get(p["id"])["next_action"]["redirect_to_url"]["url"]
    answer = env.sandboxes[connector].submit_challenge(url, "pass")
    assert answer.status_code in (302, 303)
    time.sleep(webhooks_module.RETURN_INQUIRY_INTERVAL_SECONDS + 0.1)
    before = len(asked)
    httpx.get(back, follow_redirects=False)
    assert len(asked) == before + 1
    assert env.get(p["id"])["status"] == "succeeded"
