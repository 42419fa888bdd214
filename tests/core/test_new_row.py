"""`payera.core.rowsql.new_row(model, **values)`: the instance `model(**values)` builds, for the
rows a payment builds only to insert them (PaymentEvents, outbox events, audit entries), without
`Model.__init__`'s generic keyword handling; anything unusual is Django's own constructor."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db.models import DEFERRED
from django.db.models.signals import post_init, pre_init

from payera.audit.models import AuditLogEntry
from payera.core.rowsql import new_row
from payera.events.models import Event
from payments.models import Payment, PaymentEvent
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

WHEN = dt.datetime(2026, 12, 6, 14, 0, tzinfo=dt.UTC)


def _same(ours, django) -> None:
    assert type(ours) is type(django)
    assert {k: v for k, v in vars(ours).items() if k != "_state"} == {
        k: v for k, v in vars(django).items() if k != "_state"}
    assert list(vars(ours)) == list(vars(django))  # the same attributes, set in the same order
    assert (ours._state.adding, ours._state.db) == (django._state.adding, django._state.db)
    assert ours._state.fields_cache == django._state.fields_cache


def _payment():
    merchant = MerchantFactory()
    return Payment.objects.create(merchant=merchant, amount=1000, currency="EUR")


@pytest.mark.parametrize("by", ["instance", "id"])
def test_a_payment_event_is_the_one_django_builds(by):
    payment = _payment()
    related = {"payment": payment} if by == "instance" else {"payment_id": payment.pk}
    values = dict(related, object_type="payment", object_id=payment.pk, transition="mark_processing",
                  from_status="requires_confirmation", to_status="processing", actor="api_key:key_1",
                  data={"n": 1}, created_at=WHEN)
    ours, django = new_row(PaymentEvent, **values), PaymentEvent(**values)
    _same(ours, django)
    if by == "instance":
        assert ours.payment is payment  # cached by the descriptor, no query


def test_defaults_are_filled_fresh_for_each_row():
    payment = _payment()
    first = new_row(PaymentEvent, payment=payment, object_type="payment", object_id=payment.pk,
                    transition="t", from_status="a", to_status="b", actor="x")
    second = new_row(PaymentEvent, payment=payment, object_type="payment", object_id=payment.pk,
                     transition="t", from_status="a", to_status="b", actor="x")
    django = PaymentEvent(payment=payment, object_type="payment", object_id=payment.pk, transition="t",
                          from_status="a", to_status="b", actor="x")
    assert set(vars(first)) == set(vars(django))
    assert first.data == {} and first.data is not second.data  # a callable default, called per row
    assert first.created_at is not None and first.id is None


def test_an_event_and_an_audit_entry_are_the_ones_django_builds():
    values = {"id": "evt_x", "merchant_id": "mer_x", "type": "payment.succeeded", "api_version": "2026-01-01",
              "data": {"object": {}}, "created_at": WHEN}
    _same(new_row(Event, **values), Event(**values))
    content_type = ContentType.objects.get_for_model(Payment)
    entry = {"content_type": content_type, "object_pk": "pay_1", "object_id": None, "object_repr": "pay_1",
             "action": AuditLogEntry.Action.CREATE, "changes": {"a": ["None", "1"]}, "changes_text": "",
             "serialized_data": None, "additional_data": None, "actor": None, "cid": "req_1", "timestamp": WHEN}
    _same(new_row(AuditLogEntry, **entry), AuditLogEntry(**entry))


def test_a_deferred_value_is_left_unset_as_django_leaves_it():
    values = {"id": "evt_x", "merchant_id": "mer_x", "type": "t", "api_version": "v", "data": DEFERRED,
              "created_at": WHEN}
    _same(new_row(Event, **values), Event(**values))


def test_a_wrong_related_type_is_refused_as_django_refuses_it():
    with pytest.raises(ValueError, match="must be a \"Payment\" instance"):
        new_row(PaymentEvent, payment=MerchantFactory.build(), object_type="payment")


@pytest.mark.parametrize("values", [
    {"merchant_id": "mer_x", "nope": 1},  # not a field: Django's TypeError
    {"merchant_id": "mer_x", "pk": "evt_pk"},  # a property: Django sets it
])
def test_anything_else_is_djangos_constructor(values):
    try:
        expected = Event(**values)
    except TypeError as exc:
        with pytest.raises(TypeError, match=re.escape(str(exc))):
            new_row(Event, **values)
    else:
        _same(new_row(Event, **values), expected)


def test_a_relation_given_as_instance_and_id_is_djangos_constructor():
    payment, other = _payment(), _payment()
    values = {"payment": payment, "payment_id": other.pk, "object_type": "payment", "created_at": WHEN}
    ours, django = new_row(PaymentEvent, **values), PaymentEvent(**values)
    assert ours.payment_id == django.payment_id == other.pk  # Django sets the id after the instance


def test_a_post_init_receiver_gets_its_signal():
    seen = []

    def before(sender, args, kwargs, **rest):
        seen.append(("pre", dict(kwargs)))

    def after(sender, instance, **kwargs):
        seen.append(("post", instance))

    pre_init.connect(before, sender=Event)
    post_init.connect(after, sender=Event)
    try:
        row = new_row(Event, merchant_id="mer_x", type="t", api_version="v", data={}, created_at=WHEN)
    finally:
        pre_init.disconnect(before, sender=Event)
        post_init.disconnect(after, sender=Event)
    assert seen == [("pre", {"merchant_id": "mer_x", "type": "t", "api_version": "v", "data": {}, "created_at": WHEN}),
                    ("post", row)]
