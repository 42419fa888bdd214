"""Detaching a saved payment method that a live subscription charges.

Before: `POST /v1/payment_methods/{id}/detach` of a method an `active` (or `past_due`)
subscription used was accepted; the subscription learnt it only at its next charge, refused before
the PSP (`payment_method_detached`, a hard failure): `unpaid`, the customer's service cut for a
method the merchant itself removed, with no warning at the time of the detach.

Now (docs/api.md "Saved payment methods"): the detach is refused with 400 `invalid_request_error`,
code `payment_method_in_use`, the message naming the subscriptions, and nothing changes (the
number is not destroyed, no event), until those subscriptions are canceled or given another method.
A method that only `canceled` or `unpaid` subscriptions used (nothing will be charged with it) is
detached as before. A subscription created (or switched) with the method at the same moment as
its detach: one of the two wins, never a live subscription on a detached method (real threads on
PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from payera.core.errors import PayeraError
from payera.events.models import Event
from payments.models import PaymentMethod, Subscription
from payments.services import payment_method_detach, subscription_create, subscription_update
from tests.payments.test_subscriptions_api import saved

pytestmark = pytest.mark.django_db


def subscription(pm, status="active") -> Subscription:
    sub = Subscription.objects.create(
        merchant=pm.merchant,
        customer=pm.customer,
        payment_method=pm,
        amount=900,
        currency="EUR",
        interval="month",
        anchor=timezone.now(),
        next_charge_at=timezone.now(),
    )
    Subscription.objects.filter(pk=sub.pk).update(status=status)
    return Subscription.objects.get(pk=sub.pk)


@pytest.mark.parametrize("status", ["active", "past_due"])
def test_a_method_a_live_subscription_charges_cannot_be_detached(merchant_client, merchant, status):
    pm = saved(merchant)
    sub = subscription(pm, status)
    other = subscription(pm, "active")
    r = merchant_client.post(f"/v1/payment_methods/{pm.id}/detach")
    assert r.status_code == 400, r.content
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "payment_method_in_use")
    assert sub.id in error["message"] and other.id in error["message"]
    row = PaymentMethod.objects.get(pk=pm.pk)
    assert row.detached_at is None and row.credentials.exists()
    assert not Event.objects.filter(type="payment_method.detached").exists()
    assert merchant_client.get(f"/v1/payment_methods/{pm.id}").json()["reusable"] is True


def test_once_its_subscriptions_are_switched_or_canceled_it_is_detached(merchant_client, merchant):
    pm = saved(merchant)
    switched, canceled = subscription(pm), subscription(pm, "past_due")
    assert merchant_client.post(f"/v1/payment_methods/{pm.id}/detach").status_code == 400
    new = saved(merchant, pm.customer)
    r = merchant_client.post(f"/v1/subscriptions/{switched.id}", {"payment_method": new.id}, format="json")
    assert r.status_code == 200, r.content
    r = merchant_client.post(f"/v1/payment_methods/{pm.id}/detach")
    assert r.status_code == 400 and switched.id not in r.json()["error"]["message"]
    assert canceled.id in r.json()["error"]["message"]
    assert merchant_client.post(f"/v1/subscriptions/{canceled.id}/cancel").status_code == 200
    r = merchant_client.post(f"/v1/payment_methods/{pm.id}/detach")
    assert r.status_code == 200 and r.json()["detached"] is not None


@pytest.mark.parametrize("status", ["canceled", "unpaid"])
def test_a_method_only_ended_or_unpaid_subscriptions_used_is_detached(merchant_client, merchant, status):
    pm = saved(merchant)
    subscription(pm, status)
    r = merchant_client.post(f"/v1/payment_methods/{pm.id}/detach")
    assert r.status_code == 200 and r.json()["detached"] is not None


def race_once(merchant) -> None:
    old = saved(merchant)
    sub = subscription(old)
    pm = saved(merchant, old.customer)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run(fn) -> None:
        try:
            barrier.wait()
            fn()
            outcomes.append("ok")
        except PayeraError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    switch = lambda: subscription_update(merchant=merchant, subscription_id=sub.id, payment_method=pm.id)  # noqa: E731
    detach = lambda: payment_method_detach(merchant=merchant, payment_method_id=pm.id)  # noqa: E731
    threads = [threading.Thread(target=run, args=(fn,)) for fn in (switch, detach)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = Subscription.objects.get(pk=sub.pk)
    detached = PaymentMethod.objects.get(pk=pm.pk).detached_at is not None
    assert not (row.payment_method_id == pm.id and detached), outcomes
    assert sorted(outcomes) in (["ok", "payment_method_in_use"], ["ok", "payment_method_detached"]), outcomes


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_a_switch_racing_the_detach_never_leaves_a_live_subscription_on_a_detached_method(merchant):
    for _ in range(12):
        race_once(merchant)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_an_update_giving_the_method_does_not_deadlock_with_a_charge_being_inserted(merchant, monkeypatch):
    """Lock order method vs subscription, real threads: the charge path inserts its payment and then
    locks the subscription (`_charge_still_due`); an update of the same subscription naming its
    method holds the subscription's lock and then locks the method's row
    (`method_lock_for_subscription`, FOR UPDATE). No cycle: the payment's foreign key to the method
    is checked (KEY SHARE) only at commit (Django's FKs are DEFERRABLE INITIALLY DEFERRED), after the
    subscription's lock; an immediate FK, or a method lock added to the insert, would deadlock here."""
    from django.db import transaction

    from payments.models import Payment
    from payments.services import subscriptions as svc

    pm = saved(merchant)
    sub = subscription(pm)
    inserted, locked = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}
    lock_method = svc.method_lock_for_subscription

    def lock_method_later(merchant, pm_id: str) -> None:  # the update holds the subscription's lock by now
        inserted.wait(10)
        locked.set()
        lock_method(merchant, pm_id)

    monkeypatch.setattr(svc, "method_lock_for_subscription", lock_method_later)

    def charge() -> None:  # `_payment_insert_rows`: the payment's INSERT, then `with_row`
        try:
            with transaction.atomic():
                Payment.objects.create(merchant=merchant, amount=sub.amount, currency=sub.currency,
                                       customer=pm.customer, payment_method=pm, off_session=True,
                                       idempotency_key=svc.charge_key(sub.id, 1, 0))
                inserted.set()
                locked.wait(10)
                svc._charge_still_due(sub.id, payment_method_id=pm.id)
            outcomes["charge"] = "ok"
        except Exception as exc:  # noqa: BLE001 - the deadlock's error is the finding
            outcomes["charge"] = type(exc).__name__
        finally:
            connection.close()

    def update() -> None:
        try:
            subscription_update(merchant=merchant, subscription_id=sub.id, payment_method=pm.id,
                                metadata={"plan": "gold"})
            outcomes["update"] = "ok"
        except Exception as exc:  # noqa: BLE001
            outcomes["update"] = type(exc).__name__
        finally:
            connection.close()

    threads = [threading.Thread(target=fn) for fn in (charge, update)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes == {"charge": "ok", "update": "ok"}
    assert Subscription.objects.get(pk=sub.pk).metadata == {"plan": "gold"}


def record(outcomes: dict[str, str], name: str, fn, *, close: bool = False) -> None:
    """Run `fn`, keeping "ok" or its error's code under `name` (`close`: a thread's own connection)."""
    try:
        fn()
        outcomes[name] = "ok"
    except PayeraError as exc:
        outcomes[name] = exc.code
    finally:
        if close:
            connection.close()


def _lock_wait_seen(racer: threading.Thread, timeout: float = 10.0) -> None:
    """Until `racer` is done or some other backend of this database waits for a lock (pg_locks, not
    granted; the view is the whole server's)."""
    import time

    deadline = time.monotonic() + timeout
    while racer.is_alive() and time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid() AND database "
                           "= (SELECT oid FROM pg_database WHERE datname = current_database())")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
@pytest.mark.parametrize("taker", ["switch", "create"])
def test_a_detach_landing_while_a_subscription_checks_the_method_is_seen_as_a_detach(merchant, monkeypatch, taker):
    """The switch (`subscription_update`) or the create read the method (not detached) and was
    checking it when the detach committed (its credentials deleted): it answered 400
    `payment_method_not_reusable`, a wrong reason (and the race test above failed now and then with
    it). Both lock the method's row before reading it (the create checked it outside any
    transaction), the lock the detach takes first: the detach waits, finds the subscription on the
    method and is refused 400 `payment_method_in_use`."""
    from payments.services import subscriptions as svc

    old = saved(merchant)
    sub = subscription(old)
    pm = saved(merchant, old.customer)
    take = {
        "switch": lambda: subscription_update(merchant=merchant, subscription_id=sub.id, payment_method=pm.id),
        "create": lambda: subscription_create(merchant=merchant, customer=pm.customer_id, payment_method=pm.id,
                                              amount=900, currency="EUR", interval="month"),
    }[taker]
    outcomes: dict[str, str] = {}
    expired = svc.method_expired
    racer = threading.Thread(target=record, args=(
        outcomes, "detach", lambda: payment_method_detach(merchant=merchant, payment_method_id=pm.id)),
        kwargs={"close": True})

    def expired_then_detach(method) -> bool:  # the method is being checked: the detach lands
        result = expired(method)
        if not racer.is_alive() and "detach" not in outcomes:
            racer.start()
            _lock_wait_seen(racer)  # blocked on the method's lock (fixed), or done (before)
        return result

    monkeypatch.setattr(svc, "method_expired", expired_then_detach)
    record(outcomes, taker, take)
    racer.join(10)
    assert outcomes == {taker: "ok", "detach": "payment_method_in_use"}
    assert Subscription.objects.filter(payment_method=pm, status__in=["active", "past_due"]).count() == 1
    assert PaymentMethod.objects.get(pk=pm.pk).detached_at is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_a_detach_committed_before_a_create_locks_the_method_is_seen_as_detached(merchant, monkeypatch):
    """The other order: the detach holds the method's row lock (it is deleting the credentials) when
    the create comes to check the method: the create waits for it and answers 400
    `payment_method_detached` (not `payment_method_not_reusable`); no subscription is made."""
    from payments.services import payment_methods as pm_svc

    pm = saved(merchant)
    outcomes: dict[str, str] = {}
    held, release = threading.Event(), threading.Event()
    mandate_end = pm_svc.mandate_end

    def mandate_end_held(**kwargs) -> None:  # inside the detach's transaction, credentials deleted
        mandate_end(**kwargs)
        held.set()
        release.wait(10)

    monkeypatch.setattr(pm_svc, "mandate_end", mandate_end_held)

    def detach() -> None:
        payment_method_detach(merchant=merchant, payment_method_id=pm.id)

    def create() -> None:
        subscription_create(merchant=merchant, customer=pm.customer_id, payment_method=pm.id, amount=900,
                            currency="EUR", interval="month")

    racer = threading.Thread(target=record, args=(outcomes, "detach", detach), kwargs={"close": True})
    racer.start()
    assert held.wait(10)
    creator = threading.Thread(target=record, args=(outcomes, "create", create), kwargs={"close": True})
    creator.start()
    _lock_wait_seen(creator, timeout=3)  # the create waits on the method's lock (or, unlocked, is done)
    release.set()
    for t in (racer, creator):
        t.join(10)
    assert outcomes == {"detach": "ok", "create": "payment_method_detached"}
    assert not Subscription.objects.filter(payment_method=pm).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="pg_locks")
def test_the_lock_wait_helper_ignores_waits_in_other_databases():
    """`_lock_wait_seen` read pg_locks for the whole server: a lock wait of any other database (another
    xdist worker's test database, another engineer's run on the shared server) made it return before
    the racer was blocked, and the race tests above then passed without the lock they pin (the
    racer's detach done after the subscription's check). Only this database's waits count."""
    import time

    import psycopg
    from django.conf import settings

    conf = settings.DATABASES["default"]
    kw = {"host": conf["HOST"] or None, "port": conf["PORT"] or None, "user": conf["USER"],
          "password": conf["PASSWORD"] or None, "dbname": "postgres", "autocommit": True}  # another database
    holder, waiter = psycopg.connect(**kw), psycopg.connect(**kw)
    try:
        holder.execute("SELECT pg_advisory_lock(20202020)")
        blocked = threading.Thread(target=lambda: waiter.execute("SELECT pg_advisory_lock(20202020)"))
        blocked.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not holder.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory'").fetchone()[0]:
            time.sleep(0.02)
        racer = threading.Thread(target=time.sleep, args=(1.0,))  # busy, never waiting on a lock
        racer.start()
        _lock_wait_seen(racer, timeout=5)
        returned_early = racer.is_alive()
        holder.execute("SELECT pg_advisory_unlock(20202020)")
        blocked.join(5)
        assert not returned_early  # it waited for the racer, not for the other database's wait
    finally:
        holder.close()
        waiter.close()
