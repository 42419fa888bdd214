"""A SEPA return (or reject) whose reason code ends the mandate makes it `inactive`, in the
transaction that records it, audited; the codes that do not end it leave it `active`. From review
14b: `MandateStatus.INACTIVE` said "revoked or its debit returned as not authorized", but nothing
ever set it, so a mandate whose debit came back "no valid mandate" (MD01) or "account closed"
(AC04) was debited again and again.

The rule (SEPA Core rulebook, ISO 20022 reason codes; `SepaDebitMethod.mandate_ending_codes`):
MD01 (no valid mandate / unauthorised transaction), AC04 (account closed), AC06 (account blocked)
and MD07 (debtor deceased) end the mandate; MD06 (the debtor's refund of an authorised debit within
8 weeks) and AM04 (insufficient funds) do not. The beta sandbox produces only MD06 returns
(NL39RABO0300065264, end to end below) and AM04 refusals, and the contract names no IBAN for the
others, so the other codes are recorded here through the services the webhook worker and the
confirmation call (`dispute_apply_event`, `attempt_record_outcome`) on a real debit made at beta,
with the real database: nothing of ours is mocked."""

from __future__ import annotations

import datetime as dt

import pytest

from payera.audit.models import AuditLogEntry as LogEntry
from payments.models import Dispute, Payment, SepaMandate
from payments.services import dispute_apply_event
from payments.services.payments import _confirm_begin, attempt_record_outcome
from psp_adapters.port import (
    AuthorizeResult,
    Decline,
    DeclineClass,
    DeclineCode,
    DisputeInfo,
    DisputeReason,
    DisputeStatus,
    Outcome,
    PspEvent,
    PspEventKind,
    PspReference,
    PspState,
)
from tests.scenarios.test_apm import RETURNED, create, sepa, wait_for
from tests.scenarios.test_sepa_mandate_checks import saved_sepa

pytestmark = [pytest.mark.scenario]

ENDING = ["MD01", "AC04", "AC06", "MD07"]
KEEPING = ["MD06", "AM04"]


def mandate(pm: str) -> SepaMandate:
    return SepaMandate.objects.get(payment_method_id=pm)


def returned(payment_id: str, code: str) -> PspEvent:
    """Beta's CHARGEBACK notification of a returned debit, as its adapter normalizes it."""
    attempt = Payment.objects.get(pk=payment_id).attempts.get()
    reason = DisputeReason.DEBIT_RETURNED if code in ("MD06", "AM04") else DisputeReason.GENERAL
    return PspEvent(
        event_id=f"evt_return_{code}_{payment_id}", kind=PspEventKind.DISPUTE, outcome=Outcome.APPROVED,
        payment=PspReference(attempt.id, attempt.psp_reference), amount=0, currency="EUR",
        occurred_at=dt.datetime.now(dt.UTC),
        dispute=DisputeInfo(psp_dispute_id=f"BD{code}{payment_id[-12:]}", reason=reason, status=DisputeStatus.LOST,
                            psp_reason=code),
    )


@pytest.mark.parametrize("code", ENDING + KEEPING)
def test_a_return_ends_the_mandate_only_for_the_codes_that_say_it_is_no_longer_valid(env, code):
    cus, pm = saved_sepa(env, f"return-{code.lower()}@example.com")
    paid = Payment.objects.get(payment_method_id=pm)
    note = dispute_apply_event(connector="beta", event=returned(paid.id, code), actor="psp:beta")
    assert note.startswith("dispute: created"), note
    dispute = Dispute.objects.get(payment_id=paid.id)
    row = mandate(pm)
    if code in ENDING:
        assert row.status == "inactive"
        assert row.inactive_reason == f"debit of {paid.id} returned ({dispute.id}): {code}"
        assert row.inactive_at is not None and row.inactive_at >= dispute.created_at
        audit = LogEntry.objects.get(object_pk=row.pk, action=LogEntry.Action.UPDATE)
        assert audit.changes_dict["status"] == ["active", "inactive"], audit.changes_dict
        assert audit.object_merchant_id == env.merchant.id
        later = create(env, None, amount=900, customer=cus, payment_method=pm, off_session=True, expect=400)
        assert later["error"]["code"] == "mandate_inactive"
        shown = env.http.get(f"/v1/payment_methods/{pm}").json()
        assert shown["reusable"] is False
    else:
        assert (row.status, row.inactive_reason, row.inactive_at) == ("active", "", None)
        later = create(env, None, amount=900, customer=cus, payment_method=pm, off_session=True)
        assert later["status"] == "processing"
    # the same return delivered again changes nothing more
    assert dispute_apply_event(connector="beta", event=returned(paid.id, code), actor="psp:beta") == \
        "dispute: unchanged"
    updates = LogEntry.objects.filter(object_pk=row.pk, action=LogEntry.Action.UPDATE)
    assert updates.count() == (1 if code in ENDING else 0)


@pytest.mark.parametrize(("code", "ends"), [("AC04", True), ("MD01", True), ("AM04", False)])
def test_a_debit_refused_with_a_code_that_ends_the_mandate_ends_it(env, code, ends):
    """A reject (the debit refused before settlement) is recorded by `attempt_record_outcome`: the
    same rule, in the transaction that records the refusal."""
    cus, pm = saved_sepa(env, f"reject-{code.lower()}@example.com")
    later = create(env, None, amount=900, customer=cus, payment_method=pm, off_session=True, confirm=False)
    _plan, attempt = _confirm_begin(merchant=env.merchant, payment_id=later["id"], actor="test")
    refused = AuthorizeResult(
        outcome=Outcome.DECLINED, payment=PspReference(attempt.id, "BPREJECT"), state=PspState.DECLINED, amount=900,
        currency="EUR", decline=Decline(code=DeclineCode.INVALID_ACCOUNT, decline_class=DeclineClass.HARD,
                                        psp_code=code),
    )
    attempt_record_outcome(attempt_id=attempt.id, result=refused, actor="psp:beta", source="webhook")
    assert Payment.objects.get(pk=later["id"]).status == "failed"
    row = mandate(pm)
    assert row.status == ("inactive" if ends else "active")
    if ends:
        assert row.inactive_reason == f"debit of {later['id']} refused ({attempt.id}): {code}"


def test_a_debit_the_sandbox_returns_md06_keeps_its_mandate(env):
    """End to end with what beta really produces: NL39RABO0300065264 settles, then the bank returns
    it with MD06 (a refund the debtor may claim of an authorised debit): a dispute `debit_returned`,
    and the mandate stays active, so the next debit is accepted."""
    cus = env.post("/v1/customers", {"email": "md06@example.com"}, expect=201)
    first = create(env, sepa(RETURNED), customer=cus["id"], setup_future_usage="off_session")
    wait_for(lambda: Dispute.objects.filter(payment_id=first["id"]).exists())
    dispute = Dispute.objects.get(payment_id=first["id"])
    assert (dispute.reason, dispute.psp_reason) == ("debit_returned", "MD06")
    pm = first["payment_method"]["id"]
    assert mandate(pm).status == "active"
    later = create(env, None, amount=900, customer=cus["id"], payment_method=pm, off_session=True)
    assert later["status"] == "processing"
