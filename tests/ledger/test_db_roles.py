"""The runtime database role (docs/deploy.md "Database roles"): a LOGIN role that is no superuser
and owns nothing, given its privileges by `manage.py db_grant_app_role`, posts through the ledger's
services (and the whole payment path), and cannot switch the ledger's guards off. The deploy check
refuses a superuser, an owner (or a member of the owner's role) and a role with CREATEROLE."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction

from ledger import services
from ledger.checks import check_runtime_database_role, runtime_role_problems
from ledger.models import Account, AccountStatus, Entry, Journal
from ledger.types import Accounts, JournalRequest, PostingLine, transfer_lines
from ledger.verify import ledger_verify
from tests.fixtures.db_roles import connected_as

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="database roles: PostgreSQL")


def _ref(tag: str) -> str:
    return f"role:{tag}:{uuid.uuid4().hex}"


def _post_everything(owner: str) -> None:
    """Every write door of the ledger: single and batch postings (accounts created on first use),
    pending post (partial) and void, a reversal; and the read-only verify."""
    now = datetime.now(UTC)
    receivable = Accounts.psp_receivable("alpha", "EUR")
    pending, available = Accounts.merchant_pending(owner, "EUR"), Accounts.merchant_available(owner, "EUR")
    transit = Accounts.payouts_in_transit("EUR")
    services.journal_post(reference=_ref("j1"), lines=transfer_lines(debit=receivable, credit=pending, amount=1000),
                          occurred_at=now)
    services.journal_post(reference=_ref("j2"), lines=transfer_lines(debit=pending, credit=available, amount=600),
                          occurred_at=now)
    batch = services.journal_post_many([
        JournalRequest(_ref("b1"), transfer_lines(debit=pending, credit=available, amount=100), now),
        JournalRequest(_ref("b2"), transfer_lines(debit=pending, credit=available, amount=100), now),
    ])
    assert [r.status for r in batch] == ["created", "created"]
    reserved = services.pending_create(reference=_ref("p1"), occurred_at=now, expires_at=now + timedelta(hours=1),
                                       lines=transfer_lines(debit=available, credit=transit, amount=300))
    services.pending_post(pending_id=reserved.journal_id, reference=_ref("p1post"), occurred_at=now,
                          lines=[PostingLine(available, 200), PostingLine(transit, -200)])
    voided = services.pending_create(reference=_ref("p2"), occurred_at=now,
                                     lines=transfer_lines(debit=available, credit=transit, amount=50))
    services.pending_void(pending_id=voided.journal_id, reference=_ref("p2void"), occurred_at=now)
    services.journal_reverse(journal_id=batch[1].journal_id, reference=_ref("rev"), occurred_at=now)
    # the scheduler's expiry (a void through ledger_post_batch) of a pending journal already due
    due = services.pending_create(reference=_ref("p3"), occurred_at=now, expires_at=now - timedelta(seconds=1),
                                  lines=transfer_lines(debit=available, credit=transit, amount=20))
    assert services.pending_expire_due() >= 1
    assert Journal.objects.filter(pending_id=due.journal_id).exists()
    # accounts created outside a posting (the ORM: an empty projection), frozen and unfrozen
    escrow = Accounts.merchant_escrow(owner, "EUR")
    services.account_get_or_create(key=escrow)
    hot = services.account_get_or_create(key=Accounts.psp_receivable("c" + owner[-8:], "EUR"))  # with its shards
    assert hot.hot and Account.objects.filter(parent=hot).count() == hot.shards > 0
    services.account_set_status(key=escrow, status=AccountStatus.FROZEN)
    services.account_set_status(key=escrow, status=AccountStatus.ACTIVE)
    services.journal_post(reference=_ref("j3"), lines=transfer_lines(debit=available, credit=escrow, amount=10),
                          occurred_at=now)
    report = ledger_verify()
    assert report.ok, report.problems


def _refused(sql: str, params=()) -> str:
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(info.value)


def test_the_runtime_role_posts_and_cannot_switch_the_guards_off(runtime_role):
    owner = "mer_" + uuid.uuid4().hex[:16]
    with connected_as(runtime_role):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
            assert cursor.fetchone() == (runtime_role, False)
        assert check_runtime_database_role() == []
        _post_everything(owner)
        journal_id = Journal.objects.filter(reference__startswith="role:j1:").values_list("id", flat=True).last()
        # refused by the privileges, not merely by the triggers (whose message says "append-only")
        for sql in (
            "TRUNCATE ledger_entry",
            "TRUNCATE ledger_journal CASCADE",
            "TRUNCATE ledger_account CASCADE",
            "UPDATE ledger_entry SET amount = amount WHERE journal_id = %s",
            "DELETE FROM ledger_entry WHERE journal_id = %s",
            "UPDATE ledger_journal SET memo = 'x' WHERE id = %s",
            "DELETE FROM ledger_journal WHERE id = %s",
        ):
            message = _refused(sql, [journal_id] if "%s" in sql else [])
            assert "permission denied" in message, (sql, message)
        # nor can it write what the posting functions would not have: a balanced journal of its own,
        # a balance, an account born with one (docs/decisions/database-roles.md, "Session 11")
        a, b = Account.objects.filter(owner=owner, parent=None).order_by("id").values_list("id", flat=True)[:2]
        for sql, params in (
            ("INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at, created_at)"
             " VALUES (%s, 'transfer', 0, '', '{}', now(), now())", [_ref("raw")]),
            ("WITH j AS (SELECT max(id) AS id FROM ledger_journal) INSERT INTO ledger_entry"
             " (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
             " SELECT j.id, x.a, 'EUR', x.amt, 0, 1000, false FROM j, (VALUES (%s, 5), (%s, -5)) x(a, amt)", [a, b]),
            ("UPDATE ledger_account SET balance = balance + 5 WHERE id = %s", [a]),
            ("UPDATE ledger_account SET version = version + 1 WHERE id = %s", [a]),
            ("UPDATE ledger_account SET debits_pending = 0, credits_pending = 0 WHERE id = %s", [a]),
            ("DELETE FROM ledger_account WHERE id = %s", [a]),
            ("INSERT INTO ledger_journal_check (journal_id) VALUES (1)", []),
        ):
            message = _refused(sql, params)
            assert "permission denied" in message, (sql, message)
        assert "starts with balance, pending amounts and version 0" in _refused(
            "INSERT INTO ledger_account (owner, code, currency, type, debits_must_not_exceed_credits,"
            " credits_must_not_exceed_debits, hot, status, shards, balance, debits_pending, credits_pending,"
            " version, created_at) VALUES (%s, 'made_up', 'EUR', 'asset', false, false, false, 'active', 0,"
            " 1000000, 0, 0, 1, now())", [owner])
        # the functions are its only door, and only theirs: their owner's role is no login
        assert "permission denied" in _refused("SET ROLE payera_ledger_writer")
        assert "must be owner" in _refused("ALTER FUNCTION ledger_post_one(text[], text[], text[], bigint[],"
                                           " boolean[], integer[], bigint[], text, text, text, jsonb, timestamptz,"
                                           " smallint, bigint, timestamptz) SECURITY INVOKER")
        assert "must be owner" in _refused("ALTER TABLE ledger_entry DISABLE TRIGGER USER")
        assert "must be owner" in _refused("ALTER TABLE ledger_journal DISABLE TRIGGER ALL")
        assert "permission denied" in _refused("SET session_replication_role = replica")
        assert "permission denied" in _refused(
            "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql"
            " AS 'BEGIN RETURN NULL; END'")
        assert Entry.objects.filter(journal_id=journal_id).count() == 2
    # the superuser could have done all of it (what the role protects against)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ledger_entry DISABLE TRIGGER USER")
        cursor.execute("SET LOCAL session_replication_role = replica")
        transaction.set_rollback(True)


def test_granting_is_idempotent_and_refuses_a_superuser(runtime_role):
    from django.core.management import CommandError, call_command

    def privileges():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
                " FROM information_schema.role_table_grants WHERE grantee = %s GROUP BY 1 ORDER BY 1",
                [runtime_role])
            return dict(cursor.fetchall())

    first = privileges()
    with connection.cursor() as cursor:  # a stray grant is taken away by the next run
        cursor.execute(f"GRANT ALL ON ledger_entry TO {runtime_role}")
    call_command("db_grant_app_role", runtime_role, verbosity=0)
    assert privileges() == first
    assert first["ledger_entry"] == first["ledger_journal"] == "SELECT"
    assert first["ledger_account"] == "INSERT,SELECT"
    assert "ledger_journal_check" not in first
    with connection.cursor() as cursor:  # the projection's columns: not to be updated
        cursor.execute(
            "SELECT column_name FROM information_schema.column_privileges"
            " WHERE grantee = %s AND table_name = 'ledger_account' AND privilege_type = 'UPDATE'", [runtime_role])
        assert [c for (c,) in cursor.fetchall()] == ["status"]
        cursor.execute(
            "SELECT p.proname, has_function_privilege(%s, p.oid, 'EXECUTE'),"
            " coalesce(aclcontains(p.proacl, makeaclitem(0, p.proowner, 'EXECUTE', false)), true)"
            " FROM pg_proc p WHERE p.proname LIKE 'ledger\\_post\\_%%' ORDER BY 1", [runtime_role])
        # EXECUTE for the runtime role, not for PUBLIC (a NULL acl would be PUBLIC's default)
        assert cursor.fetchall() == [("ledger_post_batch", True, False), ("ledger_post_batch_atomic", True, False),
                                     ("ledger_post_one", True, False)]
    assert first["payments_payment"] == "DELETE,INSERT,SELECT,UPDATE"
    assert not any("TRUNCATE" in p or "TRIGGER" in p for p in first.values())
    out = io.StringIO()
    call_command("db_grant_app_role", runtime_role, "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert [f.split("(")[0] for f in report["functions"]] == [
        "ledger_post_batch", "ledger_post_batch_atomic", "ledger_post_one"]
    assert report["tables"]["ledger_account"] == ["SELECT", "INSERT", "UPDATE (status)"]
    with pytest.raises(CommandError, match="superuser"):
        call_command("db_grant_app_role", "postgres", verbosity=0)
    with pytest.raises(CommandError, match="no role"):
        call_command("db_grant_app_role", "payera_no_such_role_" + uuid.uuid4().hex[:6], verbosity=0)


def test_the_whole_payment_path_runs_as_the_runtime_role(runtime_role, psp_settings):
    from payments.services import payment_capture, payment_create, refund_create
    from tests.merchants.factories import MerchantFactory

    card = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    merchant = MerchantFactory(connectors=["alpha"])
    with connected_as(runtime_role):
        paid = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=card)
        assert paid.status == "succeeded"
        refund_create(merchant=merchant, payment_id=paid.id, amount=300)
        manual = payment_create(merchant=merchant, amount=500, currency="EUR", payment_method_data=card,
                                capture_method="manual")
        assert payment_capture(merchant=merchant, payment_id=manual.id, amount_to_capture=400).status == "succeeded"
        report = ledger_verify()
        assert report.ok, report.problems


@pytest.mark.django_db
def test_the_check_refuses_a_superuser_an_owner_a_member_of_the_owner_and_createrole():
    # the test connection logs in as a superuser
    assert [e.id for e in check_runtime_database_role()] == ["ledger.E101"]
    tag = uuid.uuid4().hex[:10]
    owner, member, creator, plain = (f"payera_{k}_{tag}" for k in ("own", "mem", "cre", "pln"))
    with connection.cursor() as cursor:  # all rolled back with the test's transaction
        cursor.execute(f"CREATE ROLE {owner} NOLOGIN; CREATE ROLE {member} NOLOGIN IN ROLE {owner}")
        cursor.execute(f"CREATE ROLE {creator} NOLOGIN CREATEROLE; CREATE ROLE {plain} NOLOGIN")
        cursor.execute(f"ALTER TABLE ledger_entry OWNER TO {owner}")

        def problems_as(role):
            cursor.execute(f"SET LOCAL ROLE {role}")
            try:  # the session user (the superuser) is reported too: only this role's errors
                return [(e.id, e.msg) for e in runtime_role_problems(connection) if f"'{role}'" in e.msg]
            finally:
                cursor.execute("RESET ROLE")

        ((code, message),) = problems_as(owner)
        assert code == "ledger.E102" and "ledger_entry" in message and "DISABLE TRIGGER" in message
        ((code, message),) = problems_as(member)
        assert code == "ledger.E102" and "ledger_entry" in message
        assert [c for c, _ in problems_as(creator)] == ["ledger.E103"]
        assert problems_as(plain) == []
        # a member of the posting functions' owner could replace them
        cursor.execute(f"GRANT payera_ledger_writer TO {member}")
        cursor.execute(f"REVOKE {owner} FROM {member}")
        ((code, message),) = problems_as(member)
        assert code == "ledger.E102" and "ledger_post_one()" in message
        # E105: may write the ledger past the posting functions
        cursor.execute(f"GRANT INSERT ON ledger_entry TO {plain}")
        ((code, message),) = problems_as(plain)
        assert code == "ledger.E105" and "ledger_entry (INSERT)" in message
        cursor.execute(f"REVOKE INSERT ON ledger_entry FROM {plain}")
        cursor.execute(f"GRANT UPDATE (balance, status) ON ledger_account TO {plain}")
        ((code, message),) = problems_as(plain)
        assert code == "ledger.E105" and "ledger_account.balance (UPDATE)" in message
        cursor.execute(f"REVOKE UPDATE ON ledger_account FROM {plain}")
        cursor.execute(f"GRANT UPDATE (status), INSERT ON ledger_account TO {plain}")
        assert problems_as(plain) == []  # what db_grant_app_role gives: accounts created and frozen
        cursor.execute("GRANT INSERT ON ledger_journal TO PUBLIC")
        assert [c for c, _ in problems_as(plain)] == ["ledger.E105"]  # through PUBLIC too
        cursor.execute("REVOKE INSERT ON ledger_journal FROM PUBLIC")
        cursor.execute(f"GRANT CREATE ON SCHEMA {connection.ops.quote_name('public')} TO {plain}")
        ((code, message),) = problems_as(plain)  # it could shadow a function the posting functions call
        assert code == "ledger.E105" and "schema public (CREATE)" in message
        cursor.execute(f"REVOKE CREATE ON SCHEMA public FROM {plain}")
        cursor.execute(f"ALTER FUNCTION ledger_refuse_change() OWNER TO {plain}")
        ((code, message),) = problems_as(plain)
        assert code == "ledger.E102" and "ledger_refuse_change()" in message


def test_a_production_process_refuses_to_start_as_a_superuser(transactional_db, settings):
    from payera.core.startup import refuse_unsafe_runtime

    settings.PRODUCTION = False
    refuse_unsafe_runtime()  # not production: not checked
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured, match=r"Refusing to start in production: ledger\.E101.*superuser"):
        refuse_unsafe_runtime()


def test_a_production_process_starts_as_the_runtime_role(runtime_role, settings):
    from payera.core.startup import refuse_unsafe_runtime

    settings.PRODUCTION = True
    with connected_as(runtime_role):
        refuse_unsafe_runtime()


@pytest.mark.django_db
def test_the_posting_functions_run_as_the_nologin_writer_with_a_pinned_search_path():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, p.proowner::regrole::text, p.prosecdef,"
            " (SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%%')"
            " FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace"
            " AND p.proname IN ('ledger_post_one', 'ledger_post_batch', 'ledger_post_batch_atomic') ORDER BY 1")
        rows = cursor.fetchall()
        cursor.execute("SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles"
                       " WHERE rolname = 'payera_ledger_writer'")
        assert cursor.fetchone() == (False, False, False, False)
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    assert rows == [(name, "payera_ledger_writer", True, f"search_path={schema}, pg_temp")
                    for name in ("ledger_post_batch", "ledger_post_batch_atomic", "ledger_post_one")]
