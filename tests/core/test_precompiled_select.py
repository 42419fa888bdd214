"""`payera.core.rowsql.precompiled_select`: a queryset's SELECT compiled once and run with new
values (the API key lookup, the routing rules and the attempts of a locked payment, read on every
payment: docs/decisions/precompiled-sql-hot-path.md, session 6). The rows are read every time
(no cache: a revoked key or a changed rule counts at once) and the instances are Django's."""

from __future__ import annotations

import pytest
from django.db.models.sql.compiler import SQLCompiler

from payera.core.rowsql import PrecompiledSelect, precompiled_select
from payera.merchants.models import ApiKey
from payera.merchants.selectors import _api_keys_of_prefix, api_key_find_by_secret
from payera.merchants.services import api_key_revoke
from payments.models import RoutingRule
from payments.services.payments import _enabled_rules_of, _routing_rules
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.django_db]


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_the_instances_are_the_orms_with_select_related_objects_cached():
    merchant = MerchantFactory()
    key = make_api_key(merchant)
    prefix = key.api_key.prefix
    ours = precompiled_select(ApiKey, _api_keys_of_prefix, prefix)
    orm = list(_api_keys_of_prefix(prefix))
    assert [_fields(o) for o in ours] == [_fields(o) for o in orm] and len(ours) == 1
    assert not ours[0]._state.adding and ours[0]._state.db == "default"
    assert ApiKey.merchant.is_cached(ours[0]) and _fields(ours[0].merchant) == _fields(orm[0].merchant)
    assert precompiled_select(ApiKey, _api_keys_of_prefix, "sk_test_nothing") == []


def test_the_statement_is_compiled_once_and_the_rows_read_every_time(monkeypatch):
    merchant = MerchantFactory(connectors=["alpha"])
    RoutingRule.objects.create(merchant=merchant, connector="alpha", priority=1, currencies="EUR", min_amount=5)
    assert [r.connector for r in precompiled_select(RoutingRule, _enabled_rules_of, merchant.pk)] == ["alpha"]
    compiled = []
    real = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **kw: compiled.append(self) or real(self, *a, **kw))
    RoutingRule.objects.create(merchant=merchant, connector="beta", priority=0)
    rules = _routing_rules(merchant)
    assert sorted(r.connector for r in rules) == ["alpha", "beta"]  # the new rule at once
    RoutingRule.objects.filter(merchant=merchant, connector="beta").update(enabled=False)
    assert [r.connector for r in _routing_rules(merchant)] == ["alpha"]  # a disabled one at once
    assert [
        c for c in compiled if c.query.model is RoutingRule and not c.query.is_empty() and c.__class__ is SQLCompiler
    ] == []


def test_a_revoked_key_is_refused_at_once():
    key = make_api_key(MerchantFactory())
    assert api_key_find_by_secret(raw_key=key.secret).revoked_at is None
    api_key_revoke(api_key_id=key.api_key.id)
    assert api_key_find_by_secret(raw_key=key.secret).revoked_at is not None


def test_a_value_that_is_not_a_string_goes_through_the_orm():
    merchant = MerchantFactory()
    RoutingRule.objects.create(merchant=merchant, connector="alpha")
    assert precompiled_select(RoutingRule, _enabled_rules_of, None) == []


def _startswith(prefix: str):
    return ApiKey.objects.filter(prefix__startswith=prefix)


def _twice(value: str):
    return ApiKey.objects.filter(prefix=value) | ApiKey.objects.filter(name=value)


def _values(value: str):
    return ApiKey.objects.filter(prefix=value).values("id")


@pytest.mark.parametrize("build", [_startswith, _twice, _values])
def test_a_template_it_cannot_reuse_exactly_is_refused(build):
    arity = 1
    with pytest.raises(ValueError):
        PrecompiledSelect(build, arity, "default")


def test_the_field_shortcuts_hand_back_what_django_would():
    import datetime as dt
    import warnings

    from django.db import connection, models
    from django.utils.translation import gettext_lazy

    from payera.audit.models import AuditLogEntry
    from payera.core.rowsql import db_prep_save
    from payera.events.models import Event
    from payera.idempotency.models import IdempotencyKey
    from payments.models import Capture, Payment, PaymentAttempt, PaymentEvent, PaymentMethod, PaymentStatus

    class Lazy:
        def __str__(self):
            return "lazy"

    aware = dt.datetime(2026, 12, 6, 10, 30, 1, 250, tzinfo=dt.UTC)
    values = {
        "text": (None, "", "abc", "pay_123", Lazy(), PaymentStatus.PROCESSING, gettext_lazy("lazy")),
        "int": (None, 0, 1, -5, 2**40, True, "12", 7.0),
        "bool": (None, True, False, 0, 1),
        "datetime": (None, aware, aware.astimezone(dt.timezone(dt.timedelta(hours=5))), aware.replace(tzinfo=None)),
        "key": (None, "pay_123", "cus_1", 12),
    }
    kinds = {models.CharField: "text", models.TextField: "text", models.IntegerField: "int",
             models.BooleanField: "bool", models.DateTimeField: "datetime", models.ForeignKey: "key"}
    checked = {kind: 0 for kind in values}
    for model in (Payment, PaymentMethod, PaymentAttempt, Capture, PaymentEvent, Event, AuditLogEntry, IdempotencyKey):
        for field in model._meta.concrete_fields:
            prep = db_prep_save(field)
            kind = next((k for cls, k in kinds.items() if isinstance(field, cls)), None)
            if kind is None or isinstance(field, models.AutoField) or (
                    kind == "key" and isinstance(field.target_field, models.AutoField)):
                assert prep == field.get_db_prep_save
                continue
            for value in values[kind]:
                if value is None and not field.null:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a naive datetime, both ways
                    ours, django = prep(value, connection), field.get_db_prep_save(value, connection)
                assert ours == django and type(ours) is type(django), (model, field.name, value, ours, django)
                checked[kind] += 1

    class Subclass(models.CharField):
        pass

    assert db_prep_save(Subclass(max_length=3)).__self__ is not None  # Django's own, bound
    assert checked["text"] > 50 and all(checked.values()), checked


@pytest.mark.django_db(transaction=True)
def test_the_kept_cursor_is_one_per_connection_logged_and_replaced_after_a_reconnect():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payera.core.rowsql import kept_cursor

    first = kept_cursor(connection)
    first.execute("SELECT 1")
    assert first.fetchone()[0] == 1
    second = kept_cursor(connection)
    assert second.cursor is first.cursor  # the same database cursor, a new wrapper
    with CaptureQueriesContext(connection) as ctx:  # the query log and its wrapper still see it
        kept_cursor(connection).execute("SELECT 2")
    assert [q["sql"] for q in ctx.captured_queries] == ["SELECT 2"]
    connection.close()
    third = kept_cursor(connection)  # reopens, and a cursor of the new connection
    assert third.cursor is not first.cursor
    third.execute("SELECT 3")
    assert third.fetchone()[0] == 3
