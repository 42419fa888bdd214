"""The payment path's precompiled statements (payments.rowsql, payera.core.rowsql) do what the
ORM's did: the same rows, the same audit entries, django-fsm's guard, the lock's related objects,
and a locked payment writing only its changed columns only while its remembered row is the row."""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_fsm import ConcurrentTransition

from payera.audit.models import AuditLogEntry as LogEntry
from payera.core.rowsql import rows_insert
from payments.locks import payment_lock, payment_lock_of_attempt
from payments.models import Payment, PaymentAttempt, PaymentEvent, PaymentStatus
from payments.rowsql import payment_select_for_update
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def paid(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    client = client_for(make_api_key(merchant).secret)
    body = {"amount": 1000, "currency": "EUR", "description": "first", "metadata": {"order": "1"},
            "payment_method_data": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                             "exp_year": 2034, "cvc": "123"}}}
    answer = client.post("/v1/payments", data=json.dumps(body), content_type="application/json",
                         HTTP_IDEMPOTENCY_KEY="k-rowsql")
    assert answer.status_code == 201, answer.content
    return answer.json()


def _updates(ctx, table):
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith(f'UPDATE "{table}"')]


def test_another_instance_saved_in_the_transaction_makes_the_locked_one_write_every_column(paid):
    """A save of another instance of the row leaves the locked instance's remembered row behind:
    its next save writes all its columns (as Django's full save: the other's change is
    overwritten) and its audit entry is diffed against the row as it is."""
    with transaction.atomic():
        locked = payment_lock(paid["id"])
        other = Payment.objects.get(pk=paid["id"])
        other.description = "changed elsewhere"
        other.save()
        locked.metadata = {"order": "2"}
        with CaptureQueriesContext(connection) as ctx:
            locked.save()
    [update] = _updates(ctx, "payments_payment")
    assert '"description" = ' in update and '"amount" = ' in update
    stored = Payment.objects.get(pk=paid["id"])
    assert stored.description == "first" and stored.metadata == {"order": "2"}
    entry = LogEntry.objects.filter(object_pk=paid["id"]).order_by("id").last()
    assert entry.changes_dict["description"] == ["changed elsewhere", "first"]
    assert "2" in str(entry.changes_dict["metadata"][1])


def test_a_locked_payment_saved_twice_writes_only_what_changed_each_time(paid):
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        locked = payment_lock(paid["id"])
        locked.description = "second"
        locked.save()
        locked.metadata = {"order": "3"}
        locked.save()
    first, second = _updates(ctx, "payments_payment")
    assert '"description" = ' in first and '"metadata" = ' not in first
    assert '"metadata" = ' in second and '"description" = ' not in second
    stored = Payment.objects.get(pk=paid["id"])
    assert (stored.description, stored.metadata) == ("second", {"order": "3"})
    last_two = list(LogEntry.objects.filter(object_pk=paid["id"]).order_by("-id")[:2])
    # (the second entry also lists updated_at: the remembered row moves at pre_save, before auto_now — as on main)
    assert set(last_two[1].changes_dict) == {"description"}
    assert set(last_two[0].changes_dict) - {"updated_at"} == {"metadata"}


def test_a_stale_state_is_refused_as_django_fsm_refuses_it(paid):
    """The UPDATE matches the state the instance was read in: a row moved meanwhile raises
    ConcurrentTransition and writes nothing."""
    [attempt_id] = PaymentAttempt.objects.filter(payment_id=paid["id"]).values_list("pk", flat=True)
    with transaction.atomic():
        stale = PaymentAttempt.objects.get(pk=attempt_id)
        PaymentAttempt.objects.filter(pk=attempt_id).update(status="voided")
        stale.decline_message = "late"
        with pytest.raises(ConcurrentTransition):
            stale.save()
        assert connection.needs_rollback  # as Django's save: the transaction must roll back
    assert PaymentAttempt.objects.get(pk=attempt_id).decline_message == ""


def test_the_lock_loads_merchant_method_and_booking_as_select_related(paid):
    with transaction.atomic():
        payment = payment_select_for_update(payment_id=paid["id"])
        with CaptureQueriesContext(connection) as ctx:
            assert payment.merchant.pk == payment.merchant_id
            assert payment.payment_method.pk == paid["payment_method"]["id"]
            assert not hasattr(payment, "booking")  # no booking, known without a query
            assert payment.metadata == {"order": "1"} and payment.status == "succeeded"
        assert ctx.captured_queries == []
        by_attempt = payment_lock_of_attempt(PaymentAttempt.objects.get(payment_id=paid["id"]).pk)
        assert by_attempt.pk == paid["id"]
        orm = Payment.objects.select_related("merchant", "payment_method").get(pk=paid["id"])
        for field in Payment._meta.concrete_fields:
            assert getattr(payment, field.attname) == getattr(orm, field.attname), field.name
        with pytest.raises(Payment.DoesNotExist):
            payment_lock("pay_missing")


def test_rows_insert_writes_what_bulk_create_writes(paid):
    def events(tag):
        return [PaymentEvent(payment_id=paid["id"], object_type="payment", object_id=paid["id"], transition=tag,
                             from_status="a", to_status="b", actor="test", data={"n": i}) for i in range(3)]

    with transaction.atomic():
        ours = rows_insert(events("ours"))
        theirs = PaymentEvent.objects.bulk_create(events("theirs"))
    assert all(e.pk is not None and not e._state.adding for e in ours)
    stored = {e.pk: e for e in PaymentEvent.objects.filter(transition__in=["ours", "theirs"])}
    for a, b in zip(ours, theirs, strict=True):
        x, y = stored[a.pk], stored[b.pk]
        assert (x.data, x.actor, x.from_status, x.created_at == a.created_at) == (y.data, y.actor, y.from_status, True)


# ---- a guard for Django upgrades: the precompiled save writes the row Django's own save writes ----

def _precompiled_models():
    from django.apps import apps

    from payments.rowsql import PrecompiledSaveMixin

    return sorted((m for m in apps.get_models() if issubclass(m, PrecompiledSaveMixin)), key=lambda m: m.__name__)


def _mutate(obj) -> list[str]:
    """Give every plain field a new value of its type (state fields, keys and choices excepted)."""
    from datetime import timedelta

    from django.db import models
    from django_fsm import FSMFieldMixin

    changed = []
    for f in type(obj)._meta.concrete_fields:
        if (f.primary_key or f.is_relation or f.choices or isinstance(f, FSMFieldMixin)
                or getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)):
            continue
        value = getattr(obj, f.attname)
        if isinstance(f, models.JSONField):
            new = {"guard": [1, "two", None]}
        elif isinstance(f, models.BooleanField):
            new = not value if value is not None else True
        elif isinstance(f, models.IntegerField):
            new = (value or 0) + 1
        elif isinstance(f, models.DateTimeField):
            new = (value or obj.created_at) + timedelta(seconds=1)
        elif isinstance(f, models.CharField) and f.max_length and len(value or "") < f.max_length:
            new = (value or "") + "g"
        else:
            continue
        setattr(obj, f.attname, new)
        changed.append(f.attname)
    return changed


def _row(model, pk) -> dict:
    row = model.objects.filter(pk=pk).values().get()
    auto = {f.attname for f in model._meta.concrete_fields if getattr(f, "auto_now", False)
            or getattr(f, "auto_now_add", False)}
    assert all(row[a] is not None for a in auto)
    return {k: v for k, v in row.items() if k not in auto}


def _stored_pk(model, paid) -> str:
    from payments.models import Capture, PaymentMethod

    if model is PaymentMethod:
        return paid["payment_method"]["id"]
    if model is Payment:
        return paid["id"]
    if model is PaymentAttempt:
        return PaymentAttempt.objects.get(payment_id=paid["id"]).pk
    if model is Capture:
        return Capture.objects.get(payment_id=paid["id"]).pk
    raise AssertionError(f"{model.__name__} uses PrecompiledSaveMixin: add it to this test")


@pytest.mark.parametrize("model", _precompiled_models(), ids=lambda m: m.__name__)
def test_a_precompiled_save_writes_the_row_and_audit_entry_that_djangos_save_writes(paid, model):
    """Each model's precompiled INSERT and UPDATE against Django's own save of the same instance,
    each in a transaction rolled back: the same stored row (every column but auto timestamps)
    and the same audit entry. A Django upgrade that changes what save() writes fails here."""
    from payments.rowsql import PrecompiledSaveMixin

    pk = _stored_pk(model, paid)
    table, column = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(model._meta.pk.column)

    def write(precompiled: bool, insert: bool):
        with transaction.atomic():
            obj = model.objects.get(pk=pk)
            changed = _mutate(obj)
            assert changed, "nothing to compare"
            mutated = {a: getattr(obj, a) for a in changed}
            if insert:
                with connection.cursor() as cursor:  # foreign keys to the row are checked at commit
                    cursor.execute(f"DELETE FROM {table} WHERE {column} = %s", [pk])  # noqa: S608
                obj._state.adding = True
            last = LogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
            if precompiled:
                obj.save()
            else:
                super(PrecompiledSaveMixin, obj).save()
            row = _row(model, pk)
            for f in model._meta.concrete_fields:
                if insert and getattr(f, "commit_stamp", False):
                    # stamped by the INSERT itself (payera.core.horizon.CommitStampField): a clock
                    # reading of its own, read back into the instance, never the value it held
                    assert row[f.attname] == getattr(obj, f.attname) != mutated[f.attname]
                    row[f.attname] = "stamped"
            entries = [(e.action, {k: v for k, v in e.changes_dict.items() if k not in ("created_at", "updated_at")})
                       for e in LogEntry.objects.filter(id__gt=last).order_by("id")]
            transaction.set_rollback(True)
        return row, entries

    for insert in (False, True):
        ours, theirs = write(True, insert), write(False, insert)
        assert ours == theirs, ("insert" if insert else "update")
        assert ours[0] != _row(model, pk)  # the change was written (and rolled back)


@pytest.mark.parametrize("model", [Payment, PaymentAttempt])
def test_the_state_fields_are_django_fsms_and_the_initial_state_follows_the_saves(paid, model):
    """The state fields kept per model are the ones django-fsm finds by filtering the model's
    fields; the state an instance was read in is what its next guarded save matches."""
    from django_fsm import ConcurrentTransitionMixin, FSMFieldMixin

    obj = model.objects.get(pk=paid["id"]) if model is Payment else model.objects.get(payment_id=paid["id"])
    assert tuple(obj.state_fields) == tuple(ConcurrentTransitionMixin.state_fields.fget(obj))
    assert tuple(obj.state_fields) == tuple(f for f in model._meta.fields if isinstance(f, FSMFieldMixin))
    assert obj._ConcurrentTransitionMixin__initial_states == {f.attname: getattr(obj, f.attname)
                                                              for f in obj.state_fields}
    other = model.objects.get(pk=obj.pk)
    model.objects.filter(pk=obj.pk).update(status="canceled" if model is Payment else "voided")
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        other.save()
    fresh = model.objects.get(pk=obj.pk)
    assert fresh._ConcurrentTransitionMixin__initial_states == {"status": fresh.status}
    fresh.save()  # the state it was read in: the guard lets it through, and remembers it
    assert fresh._ConcurrentTransitionMixin__initial_states == {"status": fresh.status}


def test_an_expression_as_a_value_goes_through_djangos_save_and_bulk_create(paid):
    """A query expression among the values (here `F()`) is Django's to resolve: the precompiled
    statements never send one as a parameter."""
    from django.db.models import F, Value
    from django.db.models.functions import Concat

    from payera.core.rowsql import any_expression

    assert any_expression(["a", 1, None, {"k": 1}, F("amount")])
    assert not any_expression(["a", 1, None, True, 2.5, b"x", {"k": 1}, [1], PaymentStatus.PROCESSING])
    with transaction.atomic():
        locked = payment_lock(paid["id"])
        locked.amount_refunded = F("amount_refunded") + 0
        locked.description = Concat(Value("re:"), F("description"))
        locked.save()
    assert Payment.objects.get(pk=paid["id"]).description == "re:first"
    [event] = rows_insert([PaymentEvent(payment_id=paid["id"], object_type="payment", object_id=paid["id"],
                                        transition="t", from_status="a", to_status="b", actor=Concat(Value("x"),
                                                                                                     Value("y")))])
    assert PaymentEvent.objects.get(pk=event.pk).actor == "xy"
