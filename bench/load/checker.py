"""The load run's checker: `python -m bench.load.checker <driver.json>` (Django settings and the
sandboxes' URLs and keys from the environment) first runs recovery and the PSP-webhook sweep in
rounds until quiet (`quiesce`), then reads each sandbox's view (`GET /_sandbox/payments`) and
prints `{"discrepancies": [...], "facts": {...}, "recovery_rounds": [...]}` as JSON.

`check()` takes `{"sandboxes": {"alpha": [rows], "beta": [...]}, "driver": {...}}` (the driver's
record: payments it made, with their keys and what it meant to leave open).
Proves, to the cent:
1. every authorization at a PSP belongs to exactly one Payera attempt (its reference is the
   attempt id, same connector, same amount) and its state matches the attempt's;
2. per attempt, captured and refunded amounts equal the PSP's; every succeeded refund is one
   PSP refund operation (reference = the refund id) of the same amount, and back;
3. per payment, amount_captured / amount_refunded equal the sums of its succeeded captures and
   refunds;
4. the ledger: each merchant's pending balance equals the sum over its payments of
   captured − capture fee − refunded + fee returned (payments/postings.py), each PSP receivable
   equals captured − refunded on that connector, fee revenue equals fees − fees returned;
   `ledger_verify` passes;
5. no payment, capture or refund left non-final without a reason (a 3-D Secure challenge the
   driver skipped on purpose, an attempt flagged for operations);
6. no idempotency key with two effects: one payment per create key, at most one refund per
   refund key, one capture per payment, and every replay answered the same object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict

import httpx


def check(data: dict) -> dict:
    import django

    django.setup()
    from django.db.models import Count

    from ledger.selectors import account_balance
    from ledger.types import Accounts
    from ledger.verify import ledger_verify
    from payments.models import (
        AttemptStatus,
        Capture,
        OperationStatus,
        Payment,
        PaymentAttempt,
        PaymentStatus,
        Refund,
    )

    problems: list[str] = []
    facts: dict[str, int] = defaultdict(int)
    driver = data["driver"]
    attempts = {a.id: a for a in PaymentAttempt.objects.all()}
    payments = {p.id: p for p in Payment.objects.all()}
    captures = list(Capture.objects.all())
    refunds = {r.id: r for r in Refund.objects.all()}
    facts["payments"] = len(payments)
    facts["attempts"] = len(attempts)

    # 1 + 2: the PSPs' view against the attempts
    psp_state = {
        AttemptStatus.AUTHORIZED: {"authorized"},
        AttemptStatus.CAPTURED: {"captured"},
        AttemptStatus.VOIDED: {"voided"},
        AttemptStatus.DECLINED: {"declined", "refused"},
        AttemptStatus.REQUIRES_ACTION: {"requires_action"},
    }
    seen_at_psp: set[str] = set()
    psp_refunds: dict[str, dict] = {}
    for psp, rows in data["sandboxes"].items():
        for row in rows:
            facts[f"psp_{psp}_authorizations"] += 1
            ref = row["reference"]
            att = attempts.get(ref)
            if att is None:
                problems.append(f"{psp} authorization {row['id']} ({ref}) has no Payera attempt")
                continue
            if ref in seen_at_psp:
                problems.append(f"attempt {ref} has two authorizations at the PSPs")
            seen_at_psp.add(ref)
            if att.connector != psp:
                problems.append(f"attempt {ref} is on {att.connector} but authorized at {psp}")
            if row["amount"] != att.amount or row["currency"] != att.currency:
                problems.append(f"attempt {ref}: {att.amount} {att.currency} at Payera, "
                                f"{row['amount']} {row['currency']} at {psp}")
            allowed = psp_state.get(att.status)
            if allowed is None or row["state"] not in allowed:
                problems.append(f"attempt {ref} is {att.status} at Payera but {row['state']} at {psp}")
            ok_captured = sum(c.amount for c in captures
                              if c.attempt_id == ref and c.status == OperationStatus.SUCCEEDED)
            if ok_captured != row["amount_captured"]:
                problems.append(f"attempt {ref}: captured {ok_captured} at Payera, {row['amount_captured']} at {psp}")
            ok_refunded = sum(r.amount for r in refunds.values()
                              if r.attempt_id == ref and r.status == OperationStatus.SUCCEEDED)
            if ok_refunded != row["amount_refunded"]:
                problems.append(f"attempt {ref}: refunded {ok_refunded} at Payera, {row['amount_refunded']} at {psp}")
            for op in row["operations"]:
                if op["kind"] == "refund":
                    psp_refunds[op["reference"]] = op
    for att in attempts.values():
        if att.status in (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED, AttemptStatus.VOIDED) \
                and att.id not in seen_at_psp:
            problems.append(f"attempt {att.id} is {att.status} at Payera but unknown at {att.connector}")
    for ref, op in psp_refunds.items():
        refund = refunds.get(ref)
        if refund is None:
            problems.append(f"PSP refund {op['id']} ({ref}) has no Payera refund")
        elif op["state"] == "succeeded" and (refund.status, refund.amount) != (OperationStatus.SUCCEEDED, op["amount"]):
            problems.append(f"refund {ref}: {refund.status} {refund.amount} at Payera, succeeded {op['amount']} at PSP")
        elif op["state"] == "failed" and refund.status != OperationStatus.FAILED:
            problems.append(f"refund {ref}: {refund.status} at Payera, failed at the PSP")
    for refund in refunds.values():
        if refund.status == OperationStatus.SUCCEEDED and refund.id not in psp_refunds:
            problems.append(f"refund {refund.id} succeeded at Payera but unknown at the PSP")

    # 3 + 4: payments and the ledger
    cap_by_payment: dict[str, list] = defaultdict(list)
    for c in captures:
        cap_by_payment[c.payment_id].append(c)
    ref_by_payment: dict[str, list] = defaultdict(list)
    for r in refunds.values():
        ref_by_payment[r.payment_id].append(r)
    expect_pending: dict[tuple[str, str], int] = defaultdict(int)
    expect_receivable: dict[tuple[str, str], int] = defaultdict(int)
    expect_revenue: dict[str, int] = defaultdict(int)
    for p in payments.values():
        ok_caps = [c for c in cap_by_payment[p.id] if c.status == OperationStatus.SUCCEEDED]
        ok_refs = [r for r in ref_by_payment[p.id] if r.status == OperationStatus.SUCCEEDED]
        captured, refunded = sum(c.amount for c in ok_caps), sum(r.amount for r in ok_refs)
        if (p.amount_captured, p.amount_refunded) != (captured, refunded):
            problems.append(f"payment {p.id}: captured/refunded {p.amount_captured}/{p.amount_refunded}, "
                            f"its captures and refunds say {captured}/{refunded}")
        if len(ok_caps) > 1:
            problems.append(f"payment {p.id} has {len(ok_caps)} succeeded captures")
        facts["captured"] += captured
        facts["refunded"] += refunded
        for c in ok_caps:
            conn = attempts[c.attempt_id].connector
            mine = sum(r.amount for r in ok_refs if r.attempt_id == c.attempt_id)
            fee_back = c.fee * mine // c.amount if c.amount else 0  # the proportional shares, summed
            expect_pending[(str(p.merchant_id), p.currency)] += -(c.amount - c.fee - mine + fee_back)
            expect_receivable[(conn, p.currency)] += c.amount - mine
            expect_revenue[p.currency] += -(c.fee - fee_back)
    for (merchant, currency), want in expect_pending.items():
        got = _balance(account_balance, Accounts.merchant_pending(merchant, currency))
        if got != want:
            problems.append(f"merchant {merchant} pending {currency}: ledger {got}, payments say {want}")
    for (conn, currency), want in expect_receivable.items():
        got = _balance(account_balance, Accounts.psp_receivable(conn, currency))
        if got != want:
            problems.append(f"psp_receivable:{conn} {currency}: ledger {got}, payments say {want}")
    for currency, want in expect_revenue.items():
        got = _balance(account_balance, Accounts.fee_revenue(currency))
        if got != want:
            problems.append(f"fee_revenue {currency}: ledger {got}, payments say {want}")
    report = ledger_verify(limit=20)
    facts["ledger_entries"] = report.entries
    if not report.ok:
        problems.append(f"ledger_verify: {dict((k, v) for k, v in report.problems.items() if v)}")

    # 5: nothing non-final without a reason
    skipped_3ds = {pid for pid, rec in driver["payments"].items() if rec.get("leave_open")}
    final = {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED}
    for p in payments.values():
        if p.status in final:
            continue
        if p.status == PaymentStatus.REQUIRES_ACTION and p.id in skipped_3ds:
            facts["open_3ds_skipped"] += 1
            continue
        if p.status == PaymentStatus.REQUIRES_CAPTURE and p.id in skipped_3ds:
            facts["open_left_uncaptured"] += 1
            continue
        flagged = [a.id for a in attempts.values() if a.payment_id == p.id and a.needs_attention]
        if flagged:
            facts["open_flagged_for_operations"] += 1
            continue
        problems.append(f"payment {p.id} left {p.status} (inflight={p.inflight!r}) without a reason")
    for c in captures:
        if c.status == OperationStatus.PENDING:
            problems.append(f"capture {c.id} left pending")
    for r in refunds.values():
        if r.status == OperationStatus.PENDING:
            problems.append(f"refund {r.id} left pending")

    # 6: one effect per idempotency key
    by_key = Payment.objects.exclude(metadata__load_key=None).values("metadata__load_key").annotate(n=Count("id"))
    for row in by_key:
        if row["n"] > 1:
            problems.append(f"create key {row['metadata__load_key']} made {row['n']} payments")
    for key, ids in driver["key_answers"].items():
        if len(set(ids)) > 1:
            problems.append(f"key {key} was answered with different objects {sorted(set(ids))}")
    for pid, rec in driver["payments"].items():
        if pid not in payments:
            problems.append(f"payment {pid} answered to the driver does not exist")
            continue
        n = len(ref_by_payment[pid])
        if n > len(rec.get("refund_keys", [])):
            problems.append(f"payment {pid}: {n} refunds from {len(rec['refund_keys'])} refund keys")
        allowed = len(rec.get("op_keys", [])) + (payments[pid].capture_method == "automatic")
        if len(cap_by_payment[pid]) > allowed:
            problems.append(f"payment {pid}: {len(cap_by_payment[pid])} capture rows from {allowed} requests")
    facts["discrepancies"] = len(problems)
    return {"discrepancies": problems, "facts": dict(facts)}


def _balance(account_balance, key) -> int:
    from ledger.errors import AccountNotFoundError

    try:
        return account_balance(key=key).posted
    except AccountNotFoundError:
        return 0


def sandbox_auth(psp: str) -> dict[str, str]:
    key = os.environ[f"SANDBOX_{psp.upper()}_API_KEY"]
    return {"Authorization": f"Bearer {key}"} if psp == "alpha" else {"X-Api-Key": key}


def sandbox_get(psp: str, path: str) -> dict:
    r = httpx.get(os.environ[f"SANDBOX_{psp.upper()}_URL"] + path, headers=sandbox_auth(psp), timeout=60)
    r.raise_for_status()
    return r.json()


def psp_backlog() -> int:
    """Webhooks the sandboxes have not delivered yet (late ones included)."""
    return sum(1 for psp in ("alpha", "beta") for e in sandbox_get(psp, "/_sandbox/events")["events"]
               if not e["delivered_at"] and not e["given_up"])


def quiesce(max_rounds: int = 20) -> list[dict]:
    """What `manage.py run_recovery` does, in rounds until two in a row change nothing and the
    sandboxes have no webhook left to send; then the stuck-state sweep."""
    import django

    django.setup()
    from payments.services import psp_webhook_process_due, recovery_run, stuck_sweep

    rounds: list[dict] = []
    quiet = 0
    for _ in range(max_rounds):
        out = recovery_run(force=True)
        out["webhooks"] = psp_webhook_process_due()
        rounds.append(out)
        # inquiring a 3-D Secure payment the shopper never finished changes nothing: not busy
        busy = out["resolved"] or out["captures"] or out["refunds"] or out["cancels"] or out["webhooks"]
        quiet = 0 if busy or psp_backlog() else quiet + 1
        if quiet >= 2:
            break
        time.sleep(1)
    stuck_sweep()
    return rounds


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        driver = json.load(fh)
    rounds = quiesce()
    views = {psp: sandbox_get(psp, "/_sandbox/payments")["payments"] for psp in ("alpha", "beta")}
    result = check({"sandboxes": views, "driver": driver})
    result["recovery_rounds"] = rounds
    sys.stdout.write(json.dumps(result) + "\n")
