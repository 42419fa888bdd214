"""The merchant's first evidence send racing its own repeat (docs/api.md "Disputes").

`POST /v1/disputes/{id}/evidence` twice at once (two Idempotency-Keys: a client retry after its
own timeout): the first request records the evidence as pending and sends it; the repeat finds it
pending and sends it again with the same key (the PSP holds one submission). The first send's
own failure ("not taken": a PSP 503) cleared pending evidence and answered "not sent, send again"
while the repeat's send was still out: when the repeat was taken, the merchant was told 503 "not
sent" on a dispute that was `under_review`; when the repeat failed too, the repeat answered 200
`needs_response` (or 202 "pending, sent again until the PSP answers") on a dispute with nothing
pending and nothing sent. Now the latest send owns the pending evidence: the first send's failure
no longer ends it while a later send is out, and each answer is the dispute as it then is.

Recovery's resends count themselves (`evidence_sends`, which sets their schedule and, past
PAYMENTS_RECOVERY_MAX_INQUIRIES, the stuck flag): two resends at once (recovery's run and the
operator's "Re-run recovery" of the payment) read the same count and wrote the same count + 1, one
resend lost. Real threads, real PostgreSQL, real HTTP to the sandbox PSP.
"""

from __future__ import annotations

import datetime as dt
import threading

import httpx
import pytest

from payments.models import Dispute
from payments.services import disputes as dispute_services
from psp_adapters.registry import get_adapter
from tests.scenarios.test_dispute_evidence_to_psp import EVIDENCE, _disputed, _pending, chaos

pytestmark = [pytest.mark.scenario]


@pytest.fixture
def psp(env) -> tuple[str, httpx.Client]:
    return "alpha", env.http


def _post_in_thread(url: str, auth: dict, key: str, out: dict) -> threading.Thread:
    def run() -> None:
        from django.db import connection

        try:
            out[key] = httpx.post(url, json={"text": EVIDENCE}, headers={**auth, "Idempotency-Key": key}, timeout=30)
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    return t


def _held_first_send(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The adapter's real evidence call, the first caller's held (its call not yet made) until
    released. Returns (first caller waiting, release)."""
    adapter = get_adapter("alpha")
    real = adapter.submit_dispute_evidence
    waiting, release = threading.Event(), threading.Event()
    calls = []
    lock = threading.Lock()

    def held(req):
        with lock:
            calls.append(req)
            first = len(calls) == 1
        if first:
            waiting.set()
            assert release.wait(40), "never released"
        return real(req)

    monkeypatch.setattr(adapter, "submit_dispute_evidence", held)
    return waiting, release


def _answer(r: httpx.Response) -> tuple[int, str, bool]:
    body = r.json()
    if "error" in body:
        return r.status_code, body["error"]["code"], False
    return r.status_code, body["status"], body["evidence_pending"]


def _race(env, d: Dispute, monkeypatch, between) -> tuple[httpx.Response, httpx.Response]:
    """The first request's send held at the PSP's door; the repeat sent and answered meanwhile;
    `between()`; then the first send made."""
    waiting, release = _held_first_send(monkeypatch)
    url = f"{env.url}/v1/disputes/{d.id}/evidence"
    auth = dict(env.http.headers)
    out: dict = {}
    a = _post_in_thread(url, auth, "first", out)
    try:
        assert waiting.wait(20), "the first send never reached the PSP"
        b = _post_in_thread(url, auth, "repeat", out)
        b.join(40)
        between()
    finally:
        release.set()
        a.join(40)
    return out["first"], out["repeat"]


def test_a_first_send_refused_while_its_repeat_was_taken_answers_under_review(env, psp, monkeypatch):
    """The repeat's send was taken; the first send then met a PSP 503. The first request answered
    503 "the evidence was not sent" about a dispute the PSP holds evidence for, `under_review`."""
    d = _disputed(env, psp)
    sandbox = env.sandboxes["alpha"]

    def psp_goes_down():
        httpx.put(
            sandbox.url + "/_sandbox/config", headers=sandbox._auth(), json={"chaos": {"error_rate": 1}}
        ).raise_for_status()

    with chaos(sandbox, {}):
        first, repeat = _race(env, d, monkeypatch, psp_goes_down)
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at) == ("under_review", None)
    assert _answer(repeat) == (200, "under_review", False), repeat.text
    assert _answer(first) == (200, "under_review", False), first.text
    held = sandbox.dispute(d.psp_dispute_id)
    assert (held["status"], held["evidence"]["reference"], held["evidence"]["text"]) == ("under_review", d.id, EVIDENCE)


def test_a_first_send_and_its_repeat_both_refused_answer_what_the_dispute_is(env, psp, monkeypatch):
    """Both sends met a PSP 503. The first cleared the pending evidence ("not sent"); the repeat
    answered 200 or 202 with nothing pending: one of the two answers was false. Now both answer the
    dispute as it is: pending (the first send cannot know the repeat was not taken), sent again by
    recovery with the same key, one submission at the PSP."""
    d = _disputed(env, psp)
    sandbox = env.sandboxes["alpha"]
    with chaos(sandbox, {"error_rate": 1}):
        first, repeat = _race(env, d, monkeypatch, lambda: None)
    monkeypatch.undo()
    d.refresh_from_db()
    state = (d.status, d.evidence_pending_at is not None)
    for r in (first, repeat):
        code, status, pending = _answer(r)
        assert (status, pending) == state, (r.status_code, r.text, state)
        assert code == (202 if pending else 200), r.text
    assert state == ("needs_response", True)
    assert sandbox.dispute(d.psp_dispute_id)["evidence"] is None
    # the PSP is back: recovery sends it once more and it is taken, one submission
    assert dispute_services.dispute_evidence_recover_due(older_than=dt.timedelta(0), force=True) == 1
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at) == ("under_review", None)
    assert sandbox.dispute(d.psp_dispute_id)["evidence"]["text"] == EVIDENCE


def test_two_resends_at_once_count_two(env, psp, monkeypatch):
    """Two resends of the same pending evidence at once, both without the PSP's answer: each
    read `evidence_sends` 0 and wrote 1, so the schedule and the stuck flag lagged one resend per
    race. Each resend now counts under the payment's lock."""
    d = _pending(env, psp)
    real_delay = dispute_services.recovery_delay
    met = threading.Barrier(2)

    def delay_when_both_counted(n):  # both threads between reading the count and writing it
        try:
            met.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass  # the other one waits for the lock this one holds: counted one after the other
        return real_delay(n)

    monkeypatch.setattr(dispute_services, "recovery_delay", delay_when_both_counted)
    from tests.helpers import race

    with chaos(env.sandboxes["alpha"], {"error_rate": 1}):
        race(2, lambda: dispute_services.dispute_evidence_resend(dispute_id=d.id))
    d.refresh_from_db()
    assert (d.status, d.evidence_pending_at is not None, d.evidence_sends) == ("needs_response", True, 2)


def test_a_repeat_under_the_same_key_while_the_first_send_is_out_is_one_submission(env, psp, monkeypatch):
    """The same Idempotency-Key twice at once: the repeat is answered 409 `idempotency_error`
    while the first request runs (the contract), never sent to the PSP a second time; the key
    then replays the first answer."""
    d = _disputed(env, psp)
    sandbox = env.sandboxes["alpha"]
    adapter = get_adapter("alpha")
    real = adapter.submit_dispute_evidence
    waiting, release, calls = threading.Event(), threading.Event(), []

    def held(req):
        calls.append(req)
        waiting.set()
        assert release.wait(40), "never released"
        return real(req)

    monkeypatch.setattr(adapter, "submit_dispute_evidence", held)
    url = f"{env.url}/v1/disputes/{d.id}/evidence"
    auth = dict(env.http.headers)
    out: dict = {}
    a = _post_in_thread(url, auth, "same", out)
    try:
        assert waiting.wait(20), "the first send never reached the PSP"
        repeat = httpx.post(url, json={"text": EVIDENCE}, headers={**auth, "Idempotency-Key": "same"}, timeout=30)
    finally:
        release.set()
        a.join(40)
    assert repeat.status_code == 409 and repeat.json()["error"]["type"] == "idempotency_error", repeat.text
    assert _answer(out["same"]) == (200, "under_review", False), out["same"].text
    replay = httpx.post(url, json={"text": EVIDENCE}, headers={**auth, "Idempotency-Key": "same"}, timeout=30)
    assert replay.json() == out["same"].json()
    assert len(calls) == 1
    assert sandbox.dispute(d.psp_dispute_id)["evidence"]["reference"] == d.id
