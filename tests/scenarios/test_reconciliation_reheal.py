"""The late heal end to end (docs/reconciliation.md, "Late heal"), on PostgreSQL and on the embedded
SQLite default: a settlement report line Payera could not explain at import time (its webhook was
lost, and the PSP was down or had not decided yet) stays a "missing in Payera" discrepancy until
`manage.py reconcile_heal` (the beat task's service) asks the PSP again; then the line matches, its
settlement is posted once, the discrepancy is resolved, the receivable check is `ok` and
`manage.py ledger_verify` is clean. Webhooks are lost for real (the sandbox posts them to another
receiver) and the PSP is down for real (its process is stopped during the import)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections

from ledger.models import Journal
from payera.staff.access import staff_grant_merchant
from reconciliation.errors import DiscrepancyPermissionError
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_aging, receivable_check
from reconciliation.services import RehealResult, discrepancy_recheck, reconcile_import, reconcile_reheal
from tests.backoffice.staff import make_staff, otp_force_login
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_reconciliation_disputes import (
    AMOUNT,
    ZERO,
    _astray,
    _back,
    _decided,
    _disputed,
    _event_id,
    _reconcile,
    _report,
    _resent,
    _ties_out,
    _with_unknown_dispute_lines,
    _won_unheard,
)

pytestmark = [pytest.mark.scenario]

DSC = "/admin/reconciliation/discrepancy/"
NOTHING = {"lines": 0, "asked": 0, "healed": 0, "reclassified": 0, "still_open": 0}


def _heal() -> dict:
    out = StringIO()
    call_command("reconcile_heal", "--json", stdout=out)
    return json.loads(out.getvalue())


def _ledger_verify_clean() -> None:
    out = StringIO()
    call_command("ledger_verify", "--json", stdout=out)  # exits 1 on a mismatch
    assert json.loads(out.getvalue())["ok"] is True
    assert_ledger_sound()


@contextmanager
def _down(env, psp: str):
    """The PSP's process is stopped (connection refused), then started again on its port."""
    sandbox = env.sandboxes[psp]
    sandbox.stop()
    try:
        yield
    finally:
        sandbox.start()


def _lost_capture(env, psp_webhooks) -> tuple[str, str, str]:
    """A clean day, a beta payment whose authorization outcome (beta captures with it) never reaches
    Payera: the PSP captured, Payera shows the payment processing. Returns (payment, attempt)."""
    for sb in env.sandboxes.values():
        sb.reset()
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    _astray(env, psp_webhooks, "beta")
    p = env.pay(amount=AMOUNT)
    attempt_id = p["attempts"][-1]["id"]
    hook = psp_webhooks.wait_for(lambda h: h.json().get("eventCode") == "AUTHORISATION"
                                 and h.json()["paymentReference"] == attempt_id)  # fmt: skip
    _back(env, "beta")
    assert env.get(p["id"])["status"] == "processing"
    return p["id"], attempt_id, _event_id(hook)


def _imported_while_down(env, psp_webhooks, tmp_path) -> tuple[str, Discrepancy]:
    """The lost capture's report imported while beta is down: its line stays missing in Payera."""
    payment_id, attempt_id, _ = _lost_capture(env, psp_webhooks)
    text = _report("beta")
    with _down(env, "beta"):
        got = _reconcile(tmp_path, "beta", text, "day")
    assert got == {"rows": 1, "matched": 0, "discrepancies": {**ZERO, "missing_in_payera": 1}}
    d = Discrepancy.objects.get()
    assert (d.kind, d.status, d.reference, d.psp_amount) == ("missing_in_payera", "open", attempt_id, AMOUNT)
    assert env.get(payment_id)["status"] == "processing"
    assert receivable_check(psp="beta") == []  # Payera knows no capture, nothing settled or posted
    return payment_id, d


def _assert_capture_healed(env, payment_id: str, d: Discrepancy) -> None:
    line = StatementLine.objects.get(psp="beta")
    run = line.run
    assert (line.outcome, line.healed, line.merchant_id) == ("matched", True, env.merchant.id)
    assert line.journal_reference == f"psp_settlement_line:{run.id}:{line.line_number}"
    journal = Journal.objects.get(reference=line.journal_reference)
    assert journal.kind == "settlement"
    assert Journal.objects.filter(kind="settlement").count() == 1  # posted once
    d.refresh_from_db()
    assert (d.status, d.resolved_by, d.adjustment_reference) == ("resolved", "reconciliation:reheal", "")
    assert f"line {line.line_number}" in d.reason and line.journal_reference in d.reason
    assert env.get(payment_id)["status"] == "succeeded"
    assert run.summary["settled"] == {"EUR": AMOUNT} and run.summary["late_healed"] == 1
    assert [c["ok"] for c in run.summary["receivable"]] == [True]
    _ties_out("beta", 0)  # captured (recorded by the heal's inquiry) and settled
    assert receivable_aging(psp="beta") == []
    assert not Journal.objects.filter(kind="adjustment").exists()
    _ledger_verify_clean()


def test_a_lost_capture_imported_while_the_psp_was_down_is_healed_later(env, psp_webhooks, tmp_path):
    payment_id, d = _imported_while_down(env, psp_webhooks, tmp_path)
    assert _heal() == {"lines": 1, "asked": 1, "healed": 1, "reclassified": 0, "still_open": 0}
    _assert_capture_healed(env, payment_id, d)
    # again: nothing left to heal, nothing moves
    journals = Journal.objects.count()
    assert _heal() == NOTHING
    assert Journal.objects.count() == journals
    # the same file imported again changes nothing either
    _reconcile(tmp_path, "beta", _report("beta"), "day")
    assert Journal.objects.count() == journals and ReconciliationRun.objects.count() == 1
    _ties_out("beta", 0)


def test_the_lost_webhook_arriving_later_is_enough_and_a_missing_at_psp_meanwhile_closes(env, psp_webhooks, tmp_path):
    payment_id, attempt_id, event_id = _lost_capture(env, psp_webhooks)
    day = _report("beta")
    with _down(env, "beta"):
        assert _reconcile(tmp_path, "beta", day, "day")["discrepancies"] == {**ZERO, "missing_in_payera": 1}
    # the lost webhook arrives after all: Payera records the capture
    assert _resent(env, "beta", event_id).status == "processed"
    assert env.get(payment_id)["status"] == "succeeded"
    # another file of the same day, without the line: the capture is missing at the PSP there
    without = "\r\n".join(line for line in day.split("\r\n") if ";Settled;" not in line)
    assert _reconcile(tmp_path, "beta", without, "without")["discrepancies"] == {**ZERO, "missing_at_psp": 1}
    at_psp = Discrepancy.objects.get(kind="missing_at_psp")
    with _down(env, "beta"):  # the PSP does not even need to answer: the line matches what Payera knows now
        assert _heal() == {"lines": 1, "asked": 1, "healed": 1, "reclassified": 0, "still_open": 0}
    line = StatementLine.objects.get(psp="beta", kind="capture")
    assert (line.outcome, line.object_id) == ("matched", at_psp.object_id)
    at_psp.refresh_from_db()
    assert (at_psp.status, at_psp.adjustment_reference) == ("resolved", "")
    assert line.journal_reference in at_psp.reason
    assert Discrepancy.objects.filter(status="open").count() == 0
    _ties_out("beta", 0)
    assert receivable_aging(psp="beta") == []
    _ledger_verify_clean()


def test_a_line_of_a_run_older_than_the_age_limit_is_left_alone(env, psp_webhooks, tmp_path, settings):
    payment_id, d = _imported_while_down(env, psp_webhooks, tmp_path)
    settings.RECONCILIATION_REHEAL_MAX_AGE_DAYS = 0
    assert _heal() == NOTHING
    d.refresh_from_db()
    assert d.status == "open" and env.get(payment_id)["status"] == "processing"
    settings.RECONCILIATION_REHEAL_MAX_AGE_DAYS = 30
    from reconciliation.tasks import reconcile_reheal_task

    assert reconcile_reheal_task.apply().get() == 1  # the beat's task: the lines it healed
    _assert_capture_healed(env, payment_id, d)


def test_two_late_heals_and_an_import_at_once_move_the_money_once(env, psp_webhooks, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("threads against PostgreSQL (SQLite has one writer at a time)")
    payment_id, d = _imported_while_down(env, psp_webhooks, tmp_path)
    start = threading.Barrier(3)
    results: list = []
    errors: list[BaseException] = []

    def run(job) -> None:
        try:
            start.wait(timeout=10)
            results.append(job())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    jobs = (reconcile_reheal, reconcile_reheal, _import_other)
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    heals = [r for r in results if isinstance(r, RehealResult)]
    assert sorted(r.healed for r in heals) == [0, 1]
    _assert_capture_healed(env, payment_id, d)


def _import_other():
    """Another day's report of beta (empty) imported at the same moment."""
    import datetime as dt

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return reconcile_import(psp="beta", raw=_report("beta", yesterday).encode(), file_name="yesterday.csv")


def _with_reversal(psp: str, text: str) -> str:
    """The report with the reversal of its chargeback (the PSP says the merchant won: the amount
    back, no fee), in the PSP's own format."""
    newline, sep, kind, gross, fee, net = ("\n", ",", 0, 8, 9, 10) if psp == "alpha" else ("\r\n", ";", 2, 8, 9, 10)
    lines = text.split(newline)
    [i] = [n for n, line in enumerate(lines) if line.split(sep)[kind:kind + 1] in (["chargeback"], ["Chargeback"])]
    cols = lines[i].split(sep)
    back = str(AMOUNT) if psp == "alpha" else "10.00"
    cols[kind] = "chargeback_reversal" if psp == "alpha" else "ChargebackReversed"
    cols[gross], cols[fee], cols[net] = back, "0" if psp == "alpha" else "0.00", back
    return newline.join([*lines[: i + 1], sep.join(cols), *lines[i + 1:]])


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_dispute_undecided_at_import_and_won_later_is_healed_later(env, psp_webhooks, tmp_path, psp):
    d = _disputed(env, psp)
    env.post(f"/v1/disputes/{d.id}/evidence", {"text": "Signed delivery receipt attached."})
    # the report already gives the money back; the PSP's answer is still "under review"
    got = _reconcile(tmp_path, psp, _with_reversal(psp, _report(psp)), "day")
    assert got == {"rows": 3, "matched": 2, "discrepancies": {**ZERO, "missing_in_payera": 1}}
    missing = Discrepancy.objects.get()
    _ties_out(psp, 0)
    # still undecided: asked again, left open and untouched
    assert _heal() == {"lines": 1, "asked": 1, "healed": 0, "reclassified": 0, "still_open": 1}
    missing.refresh_from_db()
    assert (missing.status, missing.reason, missing.resolved_by) == ("open", "", "")
    # the network decides; the decision's webhook is lost
    _won_unheard(env, psp_webhooks, psp, d)
    settlements = Journal.objects.filter(kind="settlement").count()
    assert _heal() == {"lines": 1, "asked": 1, "healed": 1, "reclassified": 0, "still_open": 0}
    d.refresh_from_db()
    assert d.status == "won"
    line = StatementLine.objects.get(kind="chargeback_reversal")
    assert (line.outcome, line.healed, line.object_id) == ("matched", True, d.id)
    assert Journal.objects.filter(kind="settlement").count() == settlements + 1
    assert Journal.objects.filter(reference=line.journal_reference).count() == 1
    missing.refresh_from_db()
    assert (missing.status, missing.resolved_by, missing.adjustment_reference) == ("resolved",
                                                                                  "reconciliation:reheal", "")
    _ties_out(psp, 0)  # captured, charged back, won back: each settled by its line
    assert receivable_aging(psp=psp) == []
    assert _heal() == NOTHING
    _ledger_verify_clean()


def test_a_line_with_another_amount_once_decided_keeps_a_discrepancy_of_that_kind(env, tmp_path):
    d = _disputed(env, "alpha")
    text = _with_reversal("alpha", _report("alpha"))
    header, *body, trailer = text.splitlines()
    [i] = [n for n, line in enumerate(body) if line.startswith("chargeback_reversal,")]
    cols = body[i].split(",")
    cols[8] = cols[10] = "1050"  # the PSP gives back more than was disputed
    body[i] = ",".join(cols)
    got = _reconcile(tmp_path, "alpha", "\n".join([header, *body, trailer]) + "\n", "day")
    assert got["discrepancies"] == {**ZERO, "missing_in_payera": 1}
    missing = Discrepancy.objects.get()
    _decided(env, d, "won")  # its webhook arrives after the import
    journals = Journal.objects.count()
    assert _heal() == {"lines": 1, "asked": 1, "healed": 0, "reclassified": 1, "still_open": 0}
    assert Journal.objects.count() == journals  # nothing posted: the amounts differ
    new = Discrepancy.objects.exclude(pk=missing.pk).get()
    assert (new.kind, new.status, new.psp_amount, new.payera_amount, new.difference) == (
        "amount_mismatch", "open", 1_050, AMOUNT, 50)
    assert new.line_id == missing.line_id and new.object_id == d.id
    missing.refresh_from_db()
    assert (missing.status, missing.resolved_by) == ("resolved", "reconciliation:reheal")
    assert f"discrepancy {new.pk}" in missing.reason and "amount_mismatch" in missing.reason
    assert StatementLine.objects.get(pk=new.line_id).journal_reference == ""
    _ties_out("alpha", AMOUNT)  # the reversal did not settle: the PSP still owes it
    assert _heal() == NOTHING
    _ledger_verify_clean()


def test_lines_naming_what_the_psp_does_not_know_stay_open(env, psp_webhooks, tmp_path):
    d = _decided(env, _disputed(env, "alpha"), "won")
    unknown = d.psp_dispute_id[:-4] + "0000"
    got = _reconcile(tmp_path, "alpha", _with_unknown_dispute_lines("alpha", _report("alpha"), unknown), "forged")
    assert got["discrepancies"] == {**ZERO, "missing_in_payera": 2}
    journals = Journal.objects.count()
    assert _heal() == {"lines": 2, "asked": 1, "healed": 0, "reclassified": 0, "still_open": 2}
    assert sorted(Discrepancy.objects.values_list("status", "reason")) == [("open", ""), ("open", "")]
    assert StatementLine.objects.filter(outcome="missing_in_payera", healed=False).count() == 2
    assert Journal.objects.count() == journals
    _ties_out("alpha", 0)


def test_the_admin_re_check_is_for_finance_only(env, psp_webhooks, tmp_path, client):
    """The admin's "Re-check with the PSP" settles lines (it posts settlement journals): it asks why
    first and each selected discrepancy is a staff action (who, why, outcome), as every other
    back-office action that moves money (docs/backoffice.md). What was wrong: it ran at the first
    click of the action menu, no reason asked and no `StaffAction` row: why money was booked was
    nowhere, and none of it showed in the staff actions' log."""
    from payera.backoffice.models import StaffAction

    payment_id, d = _imported_while_down(env, psp_webhooks, tmp_path)
    action = {"action": "recheck", "_selected_action": [d.pk]}
    why = {**action, "confirm": "1", "reason": "PSP support ticket 4411: settled after all"}
    # staff who may see this merchant's discrepancies and investigate them, not resolve them: refused
    from django.contrib.auth.models import Permission

    from tests.merchants.factories import MerchantFactory

    viewer = make_staff("viewer")
    viewer.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="reconciliation", codename__in=["view_discrepancy", "investigate_discrepancy"]))
    staff_grant_merchant(user=viewer, merchant_id=env.merchant.id)
    otp_force_login(client, viewer)
    page = client.get(DSC).content.decode()
    assert "Re-check with the PSP" not in page and str(d.reference) in page
    client.post(DSC, why)
    with pytest.raises(DiscrepancyPermissionError):  # the service checks too
        discrepancy_recheck(discrepancy_ids=[d.pk], user=viewer)
    ops = make_staff("ops", role="operations")
    otp_force_login(client, ops)
    client.post(DSC, why)
    d.refresh_from_db()
    assert d.status == "open" and env.get(payment_id)["status"] == "processing"
    assert not Journal.objects.filter(kind="settlement").exists()
    # finance limited to another merchant: the row is not theirs
    elsewhere = make_staff("fin_elsewhere", role="finance")
    staff_grant_merchant(user=elsewhere, merchant_id=MerchantFactory().id)
    otp_force_login(client, elsewhere)
    client.post(DSC, why)
    with pytest.raises(DiscrepancyPermissionError):  # the service checks the merchant too (it healed it)
        discrepancy_recheck(discrepancy_ids=[d.pk], user=elsewhere)
    d.refresh_from_db()
    assert d.status == "open" and env.get(payment_id)["status"] == "processing"
    assert not Journal.objects.filter(kind="settlement").exists()
    assert not StaffAction.objects.exists()  # nothing was done by anyone: nothing logged
    # finance of this merchant: the action menu opens the reason page, nothing is asked or booked yet
    finance = make_staff("fin", role="finance")
    staff_grant_merchant(user=finance, merchant_id=env.merchant.id)
    otp_force_login(client, finance)
    page = client.post(DSC, action)
    assert page.status_code == 200 and b'name="reason"' in page.content
    d.refresh_from_db()
    assert d.status == "open" and env.get(payment_id)["status"] == "processing"
    assert not Journal.objects.filter(kind="settlement").exists() and not StaffAction.objects.exists()
    # no reason: the page again, nothing done
    page = client.post(DSC, {**action, "confirm": "1", "reason": ""})
    assert page.status_code == 200 and b'name="reason"' in page.content
    assert not Journal.objects.filter(kind="settlement").exists() and not StaffAction.objects.exists()
    # with the reason: asked again, healed, logged once
    response = client.post(DSC, why, follow=True)
    assert "healed" in response.content.decode()
    _assert_capture_healed(env, payment_id, d)
    logged = StaffAction.objects.get()
    assert (logged.user_id, logged.action, logged.object_type, logged.object_id, logged.merchant_id) == (
        finance.pk, "reconciliation.discrepancy_recheck", "reconciliation.discrepancy", str(d.pk), env.merchant.id)
    assert (logged.reason, logged.outcome) == (why["reason"], "done") and "healed" in logged.detail
    # again: nothing left to ask about; refused and logged, nothing moves
    journals = Journal.objects.count()
    client.post(DSC, why)
    assert Journal.objects.count() == journals
    again = StaffAction.objects.exclude(pk=logged.pk).get()
    assert again.outcome == "refused" and again.object_id == str(d.pk)


def test_the_beat_runs_the_late_heal_hourly(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["reconciliation-reheal"]
    assert entry["task"] == "reconciliation.tasks.reconcile_reheal_task"
    assert entry["schedule"] == settings.RECONCILIATION_REHEAL_INTERVAL_SECONDS == 3600.0


def test_a_late_healed_line_whose_net_is_not_gross_less_fee_posts_the_money_that_moved(env, psp_webhooks, tmp_path):
    """The PSP paid out one cent less than its line's gross - fee: once healed, the line is a fee
    difference and its settlement books the net that arrived (the fee as gross - net), balanced."""
    payment_id, attempt_id, _ = _lost_capture(env, psp_webhooks)
    lines = _report("beta").split("\r\n")
    [i] = [n for n, line in enumerate(lines) if attempt_id in line]
    cols = lines[i].split(";")
    net = round(float(cols[10]) * 100) - 1
    cols[10] = f"{net // 100}.{net % 100:02d}"
    lines[i] = ";".join(cols)
    with _down(env, "beta"):
        got = _reconcile(tmp_path, "beta", "\r\n".join(lines), "day")
    assert got["discrepancies"] == {**ZERO, "missing_in_payera": 1}
    missing = Discrepancy.objects.get()
    assert _heal() == {"lines": 1, "asked": 1, "healed": 1, "reclassified": 0, "still_open": 0}  # posted
    line = StatementLine.objects.get(psp="beta")
    assert (line.outcome, line.net) == ("fee_mismatch", net)
    journal = Journal.objects.get(reference=line.journal_reference)
    legs = {e.account.code: e.amount for e in journal.entries.select_related("account")}
    assert legs == {"bank_cash": net, "psp_fee_expense": AMOUNT - net, "psp_receivable:beta": -AMOUNT}
    new = Discrepancy.objects.exclude(pk=missing.pk).get()
    # as the import opens it: the agreed fee less what the PSP kept (gross - net)
    assert (new.kind, new.status, new.difference) == ("fee_mismatch", "open", line.expected_fee - (AMOUNT - net))
    assert env.get(payment_id)["status"] == "succeeded"
    _ties_out("beta", 0)
    _ledger_verify_clean()


def test_a_late_heal_settling_an_item_finance_wrote_off_gives_the_loss_back(env, psp_webhooks, tmp_path):
    """Issue #8 limit: the missing-at-PSP capture written off as a loss, then its line healed late.
    The receivable is credited only what is still owed (nothing), the loss is recovered (Cr
    reconciliation differences): the receivable is 0, not -AMOUNT."""
    from ledger.types import Accounts
    from reconciliation.services import discrepancy_write_off
    from tests.reconciliation.helpers import asset

    payment_id, attempt_id, event_id = _lost_capture(env, psp_webhooks)
    day = _report("beta")
    with _down(env, "beta"):
        assert _reconcile(tmp_path, "beta", day, "day")["discrepancies"] == {**ZERO, "missing_in_payera": 1}
    assert _resent(env, "beta", event_id).status == "processed"
    without = "\r\n".join(line for line in day.split("\r\n") if ";Settled;" not in line)
    assert _reconcile(tmp_path, "beta", without, "without")["discrepancies"] == {**ZERO, "missing_at_psp": 1}
    at_psp = Discrepancy.objects.get(kind="missing_at_psp")
    finance = make_staff("fin", role="finance")
    staff_grant_merchant(user=finance, merchant_id=at_psp.merchant_id)  # the services check it too
    discrepancy_write_off(discrepancy_id=at_psp.pk, user=finance, reason="never paid")
    assert asset(Accounts.reconciliation_differences("EUR")) == AMOUNT  # the loss
    _ties_out("beta", 0)
    with _down(env, "beta"):
        assert _heal() == {"lines": 1, "asked": 1, "healed": 1, "reclassified": 0, "still_open": 0}
    line = StatementLine.objects.get(psp="beta", kind="capture")
    assert (line.outcome, line.object_id) == ("matched", at_psp.object_id)
    at_psp.refresh_from_db()
    assert (at_psp.status, at_psp.receivable_cleared, at_psp.receivable_recovered) == ("written_off", AMOUNT, AMOUNT)
    assert asset(Accounts.psp_receivable("beta", "EUR")) == 0  # not -AMOUNT: credited once
    assert asset(Accounts.reconciliation_differences("EUR")) == 0  # the loss recovered
    journal = Journal.objects.get(reference=line.journal_reference)
    assert journal.metadata["recovered"] == {"reconciliation_differences:EUR": AMOUNT}
    _ties_out("beta", 0)
    assert receivable_aging(psp="beta") == []
    _ledger_verify_clean()
    journals = Journal.objects.count()
    assert _heal() == NOTHING and Journal.objects.count() == journals
