"""Dispute evidence goes to the PSP (docs/api.md "Disputes", docs/sandbox.md "Dispute evidence").

It was recorded in Payera only: `POST /v1/disputes/{id}/evidence` moved the dispute to
`under_review` and nothing reached the PSP, so the card network never saw the merchant's answer
and the dispute was lost by default while the merchant was told it was under review. Now the
evidence is sent through the adapter (outside any transaction, the dispute id as the PSP's
idempotency key) and the dispute is `under_review` only once the PSP took it. Real HTTP to the
sandbox PSPs, whose own storage is asked what they hold.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from payments.models import Dispute
from payments.services import psp_webhook_process_due
from payments.services.disputes import dispute_evidence_recover_due
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.scenario]

EVIDENCE = "Signed delivery receipt, tracking 1Z999AA10123456784."


@pytest.fixture(params=["alpha", "beta"])
def psp(request, env) -> Iterator[tuple[str, httpx.Client]]:
    """A merchant routed to one sandbox PSP only, and its API client."""
    name = request.param
    merchant = MerchantFactory(connectors=[name])
    key = make_api_key(merchant)
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=30) as http:
        yield name, http


def _disputed(env, psp) -> Dispute:
    name, http = psp
    body = {
        "amount": 1000,
        "currency": "EUR",
        "payment_method_data": {
            "type": "card",
            "card": {"number": "4000000000000259", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        },
    }
    p = http.post("/v1/payments", json=body).json()
    deadline = time.monotonic() + 20
    while not Dispute.objects.filter(payment_id=p["id"]).exists():
        assert time.monotonic() < deadline, f"no dispute arrived: {p}"
        time.sleep(0.1)
        psp_webhook_process_due()
    d = Dispute.objects.get(payment_id=p["id"])
    assert d.connector == name and d.status == "needs_response"
    return d


@contextmanager
def chaos(sandbox, config: dict) -> Iterator[None]:
    httpx.put(sandbox.url + "/_sandbox/config", headers=sandbox._auth(), json={"chaos": config}).raise_for_status()
    try:
        yield
    finally:
        httpx.put(sandbox.url + "/_sandbox/config", headers=sandbox._auth(), json={"chaos": {}}).raise_for_status()


def test_evidence_reaches_the_psp_and_a_repeat_is_one_submission(env, psp):
    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    assert d.evidence_due_by is not None  # the PSP's deadline, kept from its dispute
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["evidence_pending"]) == ("under_review", False)
    held = sandbox.dispute(d.psp_dispute_id)
    assert held["status"] == "under_review"
    assert (held["evidence"]["reference"], held["evidence"]["text"]) == (d.id, EVIDENCE)
    again = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert again.status_code == 200 and again.json() == r.json()
    assert sandbox.dispute(d.psp_dispute_id)["evidence"]["id"] == held["evidence"]["id"]


def test_an_unknown_outcome_stays_pending_and_recovery_settles_it_once(env, psp):
    """A timeout after the PSP took the evidence: the dispute stays `needs_response` with
    `evidence_pending` (202), and the retry with the same key is the same submission at the PSP."""
    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    with chaos(sandbox, {"timeout_rate": 1, "timeout_seconds": 3}):
        r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["evidence_pending"]) == ("needs_response", True)
    first = sandbox.dispute(d.psp_dispute_id)["evidence"]
    assert first is not None  # it did reach the PSP
    other = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": "Something else."})
    assert other.status_code == 400 and other.json()["error"]["code"] == "dispute_evidence_pending"
    assert dispute_evidence_recover_due(older_than=dt.timedelta(0)) == 1
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at, d.evidence_error) == ("under_review", None, "")
    assert sandbox.dispute(d.psp_dispute_id)["evidence"]["id"] == first["id"]
    assert dispute_evidence_recover_due(older_than=dt.timedelta(0)) == 0


def test_a_psp_5xx_leaves_the_dispute_needing_a_response_with_a_clear_error(env, psp):
    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    with chaos(sandbox, {"error_rate": 1}):
        r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "psp_unavailable")
    assert "not sent" in error["message"] and "needs a response" in error["message"]
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at, d.evidence_submitted_at) == ("needs_response", None, None)
    assert sandbox.dispute(d.psp_dispute_id)["evidence"] is None
    got = http.get(f"/v1/disputes/{d.id}").json()
    assert (got["status"], got["evidence_pending"], got["evidence_submitted"]) == ("needs_response", False, None)
    # the PSP is back: the same evidence goes through
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 200 and r.json()["status"] == "under_review", r.text
    assert sandbox.dispute(d.psp_dispute_id)["evidence"]["text"] == EVIDENCE


def test_evidence_after_the_due_date_is_refused(env, psp):
    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    # the PSP's deadline passed (Payera still holds the earlier one): the PSP refuses
    assert sandbox.set_evidence_due(d.psp_dispute_id, time.time() - 60).status_code == 200
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["type"], r.json()["error"]["code"]) == ("invalid_request_error", "evidence_past_due")
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at) == ("needs_response", None)
    assert d.evidence_error.startswith("evidence_past_due")
    assert sandbox.dispute(d.psp_dispute_id)["evidence"] is None
    # Payera's own copy of the deadline passed: refused before any call to the PSP
    assert sandbox.set_evidence_due(d.psp_dispute_id, None).status_code == 200
    Dispute.objects.filter(pk=d.pk).update(evidence_due_by=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 400 and r.json()["error"]["code"] == "evidence_past_due", r.text
    assert sandbox.dispute(d.psp_dispute_id)["evidence"] is None


def test_concurrent_submissions_of_the_same_evidence_are_one_at_the_psp(env, psp):
    """Two requests at once (a merchant's retry racing its first): both end `under_review`, the
    PSP holds one submission (the same key: the dispute id)."""
    from payments.models import PaymentEvent
    from tests.helpers import race

    name, http = psp
    d = _disputed(env, psp)
    url = f"{env.url}/v1/disputes/{d.id}/evidence"
    auth = dict(http.headers)

    def send():
        return httpx.post(url, json={"text": EVIDENCE}, headers=auth, timeout=30)

    answers = race(3, send)
    assert sorted(r.status_code for r in answers) == [200, 200, 200], [r.text for r in answers]
    assert {r.json()["status"] for r in answers} == {"under_review"}
    held = env.sandboxes[name].dispute(d.psp_dispute_id)
    assert held["status"] == "under_review" and held["evidence"]["text"] == EVIDENCE
    assert PaymentEvent.objects.filter(object_id=d.id, transition="submit_evidence").count() == 1


def test_a_5xx_on_a_resend_keeps_the_evidence_pending(env, psp):
    """A timeout left the evidence pending (it did reach the PSP); recovery's resend then met a PSP
    5xx. The resend's "not taken" was read as "nothing was sent": pending was cleared, the dispute
    showed `needs_response` with nothing sent while the PSP held the first submission, recovery
    stopped sending it, and other text from the merchant was then taken by Payera but refused by the
    PSP (its key already holds the first text). Only the first send's own failure means nothing
    reached the PSP; a failed resend leaves it pending."""
    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    with chaos(sandbox, {"timeout_rate": 1, "timeout_seconds": 3}):
        r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 202, r.text
    with chaos(sandbox, {"error_rate": 1}):
        dispute_evidence_recover_due(older_than=dt.timedelta(0))
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at is not None) == ("needs_response", True), d.evidence_error
    other = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": "Something else."})
    assert other.status_code == 400 and other.json()["error"]["code"] == "dispute_evidence_pending", other.text
    # the PSP is back: the pending evidence is taken, the one held at the PSP
    Dispute.objects.filter(pk=d.pk).update(evidence_next_send_at=None)
    dispute_evidence_recover_due(older_than=dt.timedelta(0))
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at, d.evidence_text) == ("under_review", None, EVIDENCE)


def _pending(env, psp) -> Dispute:
    """A dispute whose evidence went out and timed out: pending, the PSP's answer unknown (it took
    it), as the grace period ago."""
    _, http = psp
    d = _disputed(env, psp)
    with chaos(env.sandboxes[d.connector], {"timeout_rate": 1, "timeout_seconds": 3}):
        r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 202, r.text
    Dispute.objects.filter(pk=d.pk).update(evidence_pending_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    d.refresh_from_db()
    return d


def test_staff_recovery_of_a_payment_sends_its_pending_evidence(env, psp):
    """Operations' "Re-run recovery" (`staff_payment_recover`) had its own copy of the recovery loop
    (attempts, captures, refunds, cancel) without the disputes' pending evidence: asked to recover
    the payment, it left the evidence unanswered. It now runs recovery's own step for the payment."""
    from payments.backoffice.services import staff_payment_recover
    from tests.backoffice.staff import make_staff

    d = _pending(env, psp)
    counts = staff_payment_recover(user=make_staff("ops", superuser=True), payment_id=d.payment_id)
    assert counts.get("evidence") == 1, counts
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at) == ("under_review", None)


def test_pending_evidence_is_resent_on_the_recovery_schedule_then_flagged(env, psp, settings):
    """Pending evidence was resent by every recovery run (each minute) for ever: no backoff, and
    nothing told support it never got an answer. It now follows the attempts' schedule
    (`recovery_delay`) and, past PAYMENTS_RECOVERY_MAX_INQUIRIES resends, the stuck sweeper flags it
    (`dispute.evidence_pending`)."""
    from payments.models import StuckItem
    from payments.services.stuck import stuck_sweep

    settings.PAYMENTS_RECOVERY_MAX_INQUIRIES = 2
    d = _pending(env, psp)
    sandbox = env.sandboxes[d.connector]
    with chaos(sandbox, {"error_rate": 1}):
        assert dispute_evidence_recover_due() == 1
        assert dispute_evidence_recover_due() == 0  # not due again before its next time
        d.refresh_from_db()
        assert d.evidence_sends == 1 and d.evidence_next_send_at is not None
        wait = (d.evidence_next_send_at - dt.datetime.now(dt.UTC)).total_seconds()
        assert 30 < wait <= 60, wait  # the schedule's second step (15 s, 1 m, 3 m, 1 h, daily)
        Dispute.objects.filter(pk=d.pk).update(evidence_next_send_at=None)
        assert dispute_evidence_recover_due() == 1
        d.refresh_from_db()
        assert d.evidence_sends == 2 and d.evidence_pending_at is not None
        Dispute.objects.filter(pk=d.pk).update(evidence_pending_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        stuck_sweep()
    [item] = StuckItem.objects.filter(object_type="dispute", object_id=d.id, cleared_at__isnull=True)
    assert item.state == "evidence_pending" and item.flagged_at is not None and item.payment_id == d.payment_id
    # the PSP answers at last: taken, and the item clears
    Dispute.objects.filter(pk=d.pk).update(evidence_next_send_at=None)
    assert dispute_evidence_recover_due() == 1
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at, d.evidence_next_send_at) == ("under_review", None, None)
    stuck_sweep()
    item.refresh_from_db()
    assert item.cleared_at is not None


def test_a_refused_resend_tells_the_merchant_by_a_dispute_updated_event(env, psp):
    """The PSP refused pending evidence on recovery's resend (past its due date): only
    `evidence_error` and a log line recorded it, the merchant (who had a 202) never learned that
    its answer did not reach the network. It now gets `dispute.updated`, the dispute object with
    `evidence_error`; a resend the PSP takes is told the same way (`under_review`)."""
    from payera.events.models import Event

    _, http = psp
    # a known event type: an endpoint may subscribe to it by name
    hook = http.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook",
                                                     "enabled_events": ["dispute.updated"]})
    assert hook.status_code == 201, hook.text
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    # recorded as pending, the process gone before its call reached the PSP
    Dispute.objects.filter(pk=d.pk).update(evidence_text=EVIDENCE,
                                           evidence_pending_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert sandbox.set_evidence_due(d.psp_dispute_id, time.time() - 60).status_code == 200
    assert dispute_evidence_recover_due() == 1
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at) == ("needs_response", None)
    [event] = Event.objects.filter(type="dispute.updated", data__object__id=d.id)
    obj = event.data["object"]
    assert (obj["status"], obj["evidence_pending"]) == ("needs_response", False)
    assert obj["evidence_error"].startswith("evidence_past_due"), obj
    assert http.get(f"/v1/disputes/{d.id}").json()["evidence_error"] == obj["evidence_error"]

    taken = _pending(env, psp)
    assert dispute_evidence_recover_due() == 1
    [event] = Event.objects.filter(type="dispute.updated", data__object__id=taken.id)
    assert event.data["object"]["status"] == "under_review"
    assert event.data["object"]["evidence_error"] is None


def test_each_answer_is_replayed_under_its_idempotency_key(env, psp):
    """The contract's replay for each answer of the evidence call: a 503 (the PSP down after the
    evidence was recorded: work began) and a 202 are stored and replayed under their key, without
    another call; a new key sends it again."""
    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    url = f"/v1/disputes/{d.id}/evidence"
    with chaos(sandbox, {"error_rate": 1}):
        down = http.post(url, json={"text": EVIDENCE}, headers={"Idempotency-Key": "ev-1"})
    assert down.status_code == 503, down.text
    again = http.post(url, json={"text": EVIDENCE}, headers={"Idempotency-Key": "ev-1"})
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (503, "true")
    assert sandbox.dispute(d.psp_dispute_id)["evidence"] is None
    with chaos(sandbox, {"timeout_rate": 1, "timeout_seconds": 3}):
        slow = http.post(url, json={"text": EVIDENCE}, headers={"Idempotency-Key": "ev-2"})
    assert slow.status_code == 202, slow.text
    replay = http.post(url, json={"text": EVIDENCE}, headers={"Idempotency-Key": "ev-2"})
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed"), replay.json()) == (202, "true", slow.json())
    taken = http.post(url, json={"text": EVIDENCE}, headers={"Idempotency-Key": "ev-3"})
    assert taken.status_code == 200 and taken.json()["status"] == "under_review", taken.text


def test_evidence_on_a_dispute_the_psp_holds_on_another_payment_is_flagged_not_dropped(env, psp):
    """The PSP answered that the dispute is not on this payment (`PspReferenceNotFoundError`: its
    dispute id names another payment's dispute, or one it does not know). That was read as "the PSP
    did not take it": pending cleared, the merchant told 502 `psp_error` "send it again" (which can
    never work) and nothing told operations that Payera and the PSP disagree on the dispute (the
    PSP may even hold the text on another payment's dispute). The merchant now gets 502
    `dispute_mismatch`, nothing stays pending and the stuck sweeper flags it (`evidence_mismatch`)."""
    from payments.models import StuckItem
    from payments.services.stuck import stuck_sweep

    _, http = psp
    other = _disputed(env, psp)
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    # Payera's row names the other payment's PSP dispute (a mismatched import, a swapped id)
    theirs, mine = other.psp_dispute_id, d.psp_dispute_id
    Dispute.objects.filter(pk=other.pk).update(psp_dispute_id=theirs + "x")
    Dispute.objects.filter(pk=d.pk).update(psp_dispute_id=theirs)
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "dispute_mismatch"), error
    assert "Send it again" not in error["message"]
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at, d.evidence_submitted_at) == ("needs_response", None, None)
    assert d.evidence_error.startswith("dispute_mismatch"), d.evidence_error
    assert http.get(f"/v1/disputes/{d.id}").json()["evidence_error"].startswith("dispute_mismatch")
    stuck_sweep()
    [item] = StuckItem.objects.filter(object_type="dispute", object_id=d.id, cleared_at__isnull=True)
    assert item.state == "evidence_mismatch" and item.flagged_at is not None and item.payment_id == d.payment_id
    # a dispute the PSP does not know at all (404) is the same mismatch
    unknown = "dp_nosuchdispute" if d.connector == "alpha" else "BDnosuchdispute"
    Dispute.objects.filter(pk=d.pk).update(psp_dispute_id=unknown)
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 502 and r.json()["error"]["code"] == "dispute_mismatch", r.text
    # operations corrected the id: the merchant's evidence goes through and the item clears
    Dispute.objects.filter(pk=d.pk).update(psp_dispute_id=mine)
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 200 and r.json()["status"] == "under_review", r.text
    assert sandbox.dispute(mine)["evidence"]["text"] == EVIDENCE
    stuck_sweep()
    item.refresh_from_db()
    assert item.cleared_at is not None


def test_a_due_date_the_psp_extends_is_taken_from_its_dispute_inquiry(env, psp):
    """`evidence_due_by` was stored once, when the dispute was created: when the PSP later moved it
    (an extension), its dispute webhook and inquiry carried the new date but Payera kept the old one,
    so past the old date the merchant's evidence was refused by Payera (400 `evidence_past_due`)
    though the PSP still took it. An open dispute now takes the PSP's date each time it is applied,
    and the merchant is told by `dispute.updated`."""
    from payera.events.models import Event
    from payments.services.recovery import dispute_settlement_inquire

    _, http = psp
    d = _disputed(env, psp)
    sandbox = env.sandboxes[d.connector]
    # Payera's copy has passed; the PSP extended it to two weeks from now
    Dispute.objects.filter(pk=d.pk).update(evidence_due_by=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    extended = int(time.time()) + 14 * 86400
    assert sandbox.set_evidence_due(d.psp_dispute_id, extended).status_code == 200
    assert dispute_settlement_inquire(attempt_id=d.attempt_id, psp_dispute_id=d.psp_dispute_id)
    d.refresh_from_db()
    assert d.evidence_due_by == dt.datetime.fromtimestamp(extended, dt.UTC)
    [event] = Event.objects.filter(type="dispute.updated", data__object__id=d.id)
    assert event.data["object"]["evidence_due_by"] == extended
    assert dispute_settlement_inquire(attempt_id=d.attempt_id, psp_dispute_id=d.psp_dispute_id)
    assert Event.objects.filter(type="dispute.updated", data__object__id=d.id).count() == 1  # unchanged: no event
    r = http.post(f"/v1/disputes/{d.id}/evidence", json={"text": EVIDENCE})
    assert r.status_code == 200 and r.json()["status"] == "under_review", r.text
    assert r.json()["evidence_due_by"] == extended


def test_a_resend_the_psp_says_is_not_on_this_payment_stops_and_tells_the_merchant(env, psp):
    """Recovery's resend of pending evidence met the PSP's "this dispute is not on this payment":
    it stayed pending and was resent on the schedule for days (a resend's "not taken" may hide an
    earlier send) though no resend can succeed. It is a mismatch: nothing pending any more, the
    merchant told by `dispute.updated` (`evidence_error` `dispute_mismatch`), flagged for operations."""
    from payera.events.models import Event
    from payments.models import StuckItem
    from payments.services.stuck import stuck_sweep

    d = _pending(env, psp)
    unknown = "dp_nosuchdispute" if d.connector == "alpha" else "BDnosuchdispute"
    Dispute.objects.filter(pk=d.pk).update(psp_dispute_id=unknown)
    assert dispute_evidence_recover_due() == 1
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at, d.evidence_next_send_at) == ("needs_response", None, None)
    assert d.evidence_error.startswith("dispute_mismatch"), d.evidence_error
    assert dispute_evidence_recover_due(force=True) == 0
    [event] = Event.objects.filter(type="dispute.updated", data__object__id=d.id)
    assert event.data["object"]["evidence_error"].startswith("dispute_mismatch")
    stuck_sweep()
    [item] = StuckItem.objects.filter(object_type="dispute", object_id=d.id, cleared_at__isnull=True)
    assert item.state == "evidence_mismatch" and item.flagged_at is not None
