"""Subscriptions: a fixed amount charged off session every period, with dunning.

Each period's payment is made through the one off-session payment service (`payment_create`
with `off_session=True`), whatever the payment method's type, with a deterministic idempotency
key `<subscription>:p<period>:t<try>`: the payments table holds one payment per key (a unique
index), so a tick run twice, or two schedulers at once, charge a period's try once.

A charge takes three steps, like every PSP call: claim the try (a `SubscriptionCharge` row,
committed, under the subscription's row lock), create/confirm the payment outside any
transaction, settle the charge from the payment's status (committed with the subscription's
transition and its events). A payment whose outcome comes later (an asynchronous PSP) leaves the
charge `pending`; the next tick settles it.

Dunning: a failed charge moves the subscription to `past_due` and is retried on
SUBSCRIPTIONS_RETRY_DAYS (days after the first failure: 1, 3, 5, 7) when the decline is one a
later try can overcome (`recurring.decline_retryable`); a hard failure, or the last retry
failing, makes it `unpaid` (no more charges). A successful retry makes it `active` again
("recovered"). `cancel_at_period_end` (at create or update): once a period is paid, the claim of
the next one cancels it instead (`Subscription.ends_at_period_end`).
Events: subscription.created, .payment_succeeded, .payment_failed, .past_due, .recovered, .unpaid,
.canceled, .updated.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Max
from django_fsm import can_proceed

from payera.core.errors import InvalidRequestError, NotFoundError, PayeraError
from payera.core.money import MAX_AMOUNT, currency_normalize
from payera.events.services import event_record
from payera.idempotency.services import idempotency_resource_record
from payera.merchants.models import Merchant
from payments import recurring
from payments.method_types import method_currency_check, method_spec
from payments.models import (
    PS,
    ChargeStatus,
    Customer,
    Payment,
    PaymentMethod,
    Subscription,
    SubscriptionCharge,
    SubscriptionInterval,
    SubscriptionStatus,
)
from payments.serializers_recurring import render_subscription
from payments.services.common import now, setting
from payments.services.customers import validate_metadata
from payments.services.methods import MandateInactiveError, method_expired, method_mandate
from payments.services.payment_methods import method_lock_for_subscription
from payments.services.payments import payment_create

logger = logging.getLogger("payera.payments")

SS = SubscriptionStatus
ACTOR = "system:subscriptions"
MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 12, "year": 3}
# a charge's payment whose outcome the PSP has yet to give (no tick can move it)
UNDER_WAY = (PS.PROCESSING, PS.REQUIRES_CAPTURE, PS.REQUIRES_ACTION)


class SubscriptionNotFoundError(NotFoundError):
    default_message = "No such subscription."


class SubscriptionStateError(InvalidRequestError):
    code = "subscription_unexpected_state"


def _emit(sub: Subscription, *types: str) -> None:
    data = render_subscription(sub)
    for type_ in types:
        event_record(merchant_id=sub.merchant_id, type=type_, data=data)


def subscription_lock(subscription_id: str) -> Subscription:
    """The one lock helper of the subscription aggregate (its charges are children)."""
    return Subscription.objects.select_for_update(of=("self",)).get(pk=subscription_id)


def _owned_method(merchant: Merchant, customer: Customer, payment_method: object, *, currency: str) -> PaymentMethod:
    """The customer's saved method a subscription in `currency` will charge, checked as a payment
    with it is (before any write): not detached, not expired, its type takes the currency (the payments' own
    `method_currency_check`: 400 `payment_method_unsupported`, `param` `currency`), its mandate
    active if it has one (`method_mandate`: 400 `mandate_inactive`), reusable off session."""
    pm = PaymentMethod.objects.filter(pk=payment_method, merchant=merchant).first() \
        if isinstance(payment_method, str) else None
    if pm is None or pm.customer_id != customer.pk:
        raise NotFoundError("No such payment method for this customer.", param="payment_method")
    if pm.detached_at is not None:
        raise InvalidRequestError("This payment method was detached.", param="payment_method",
                                  code="payment_method_detached")
    if method_expired(pm):  # every charge would be refused before the PSP (a hard failure: unpaid)
        raise InvalidRequestError("The saved card has expired.", param="payment_method", code="expired_card")
    method_currency_check(pm.type, currency)
    method_mandate(pm)
    why = method_spec(pm.type).not_reusable(pm)  # card: a PSP credential
    if why:
        raise InvalidRequestError(why, param="payment_method", code="payment_method_not_reusable")
    return pm


# --- create, update, cancel -------------------------------------------------------------
def subscription_create(
    *, merchant: Merchant, customer: str, payment_method: str, amount: int, currency: str, interval: str,
    interval_count: int = 1, description: str | None = None, metadata: dict | None = None,
    cancel_at_period_end: bool = False, actor: str = "api", now_: dt.datetime | None = None,
) -> Subscription:
    """Validate (400 before any write; the payment method under its row lock, in the insert's
    transaction: `method_lock_for_subscription`), create `active` with period 0 starting now, and charge
    period 0 at once (the same claimed, idempotent path the scheduler takes). `cancel_at_period_end`:
    as set by `subscription_update` right after (an `active` subscription): period 0 is charged (and
    dunned) as any, and the subscription ends when the period paid last ends."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidRequestError(f"amount must be a positive integer in the currency's minor unit, at most "
                                  f"{MAX_AMOUNT}.", param="amount")
    currency = currency_normalize(currency)
    if interval not in SubscriptionInterval.values:
        raise InvalidRequestError("interval must be day, week, month or year.", param="interval")
    if isinstance(interval_count, bool) or not isinstance(interval_count, int) or \
            not 1 <= interval_count <= MAX_INTERVAL_COUNT[interval]:
        raise InvalidRequestError(f"interval_count must be 1-{MAX_INTERVAL_COUNT[interval]} for {interval}.",
                                  param="interval_count")
    metadata = validate_metadata(metadata)
    if not isinstance(cancel_at_period_end, bool):
        raise InvalidRequestError("cancel_at_period_end must be true or false.", param="cancel_at_period_end")
    cus = Customer.objects.filter(pk=customer, merchant=merchant).first() if isinstance(customer, str) else None
    if cus is None:
        raise NotFoundError("No such customer.", param="customer")
    sub = _subscription_insert(merchant=merchant, customer=cus, payment_method=payment_method, amount=amount,
                               currency=currency, interval=interval, interval_count=interval_count,
                               description=description or "", metadata=metadata,
                               cancel_at_period_end=cancel_at_period_end, at=now_ or now())
    subscription_charge(subscription_id=sub.id, now_=now_)
    return Subscription.objects.get(pk=sub.id)


def subscription_create_resume(*, merchant: Merchant, subscription_id: str) -> Subscription:
    """The retry of a create whose first try crashed after inserting `subscription_id` (its
    Idempotency-Key's claim taken over: `idempotent_resume`): charge the first period if that try
    died before charging it — the same claimed path, so a period charged or under way is charged
    once (its charge row and the payment's deterministic key) — and answer the subscription."""
    sub = Subscription.objects.get(pk=subscription_id, merchant=merchant)
    if sub.current_period == 0:
        subscription_charge(subscription_id=sub.id)
    return Subscription.objects.get(pk=sub.id)


@transaction.atomic(durable=True)
def _subscription_insert(*, merchant, customer, payment_method, amount, currency, interval, interval_count,
                         description, metadata, cancel_at_period_end, at) -> Subscription:
    method_lock_for_subscription(merchant, payment_method)  # a detach at the same moment: one of the two wins
    pm = _owned_method(merchant, customer, payment_method, currency=currency)  # checked under that lock
    sub = Subscription(merchant=merchant, customer=customer, payment_method=pm, amount=amount, currency=currency,
                       interval=interval, interval_count=interval_count, description=description[:1000],
                       metadata=metadata, cancel_at_period_end=cancel_at_period_end, anchor=at, next_charge_at=at)
    sub.save(force_insert=True)
    idempotency_resource_record(resource=sub.id)  # a retry after a crash answers this subscription
    _emit(sub, "subscription.created")
    return sub


def _locked(merchant: Merchant, subscription_id: object) -> Subscription:
    if not isinstance(subscription_id, str) or not Subscription.objects.filter(
        pk=subscription_id, merchant=merchant
    ).exists():
        raise SubscriptionNotFoundError()
    return subscription_lock(subscription_id)


def subscription_update(*, merchant: Merchant, subscription_id: str, payment_method: str | None = None,
                        metadata: dict | None = None, cancel_at_period_end: bool | None = None, actor: str = "api",
                        now_: dt.datetime | None = None) -> Subscription:
    """Change the payment method (e.g. the customer gave a new card while past_due: the next
    retry charges it) or the metadata. An `unpaid` subscription given a payment method is resumed:
    the period in progress is charged at once with it (one try, through the scheduler's claimed
    path, so a tick at the same moment makes no second charge): paid → `active`, refused →
    `unpaid` again. Periods that began and ended while it was unpaid are not charged."""
    at = now_ or now()
    sub, resumed = _subscription_update_record(merchant=merchant, subscription_id=subscription_id,
                                               payment_method=payment_method, metadata=metadata,
                                               cancel_at_period_end=cancel_at_period_end, at=at)
    if not resumed:
        return sub
    logger.info("subscription %s resumed by %s: period %s charged", sub.id, actor, sub.current_period)
    subscription_charge(subscription_id=sub.id, now_=at)  # a crash before it: the next tick charges it
    return Subscription.objects.get(pk=sub.id)


@transaction.atomic(durable=True)
def _subscription_update_record(*, merchant: Merchant, subscription_id: str, payment_method: str | None,
                                metadata: dict | None, at: dt.datetime, cancel_at_period_end: bool | None = None
                                ) -> tuple[Subscription, bool]:
    sub = _locked(merchant, subscription_id)
    if sub.status == SS.CANCELED:
        raise SubscriptionStateError("A canceled subscription cannot be changed.")
    if cancel_at_period_end and not sub.cancel_at_period_end and sub.status != SS.ACTIVE:
        # past due or unpaid: the period in progress is not paid, there is no paid period to run out
        raise SubscriptionStateError(f"A {sub.status} subscription cannot be set to cancel at the end of its "
                                     "period: cancel it now instead.", param="cancel_at_period_end")
    if cancel_at_period_end is not None:
        sub.cancel_at_period_end = cancel_at_period_end
    if payment_method is not None:
        # the method's row lock before reading it: a detach that lands meanwhile waits (then sees this
        # subscription), one committed before is read as detached
        method_lock_for_subscription(merchant, payment_method)
        sub.payment_method = _owned_method(merchant, sub.customer, payment_method, currency=sub.currency)
    if metadata is not None:
        sub.metadata = validate_metadata(metadata)
    resumed = payment_method is not None and sub.status == SS.UNPAID
    if resumed:
        period = recurring.period_at(sub.anchor, sub.interval, sub.interval_count, at, first=sub.current_period)
        if SubscriptionCharge.objects.filter(subscription=sub, period=period, status=ChargeStatus.PENDING).exists():
            # that period's charge is still being processed (a SEPA debit made before an older
            # period's return made the subscription unpaid): charging it again now could take it twice
            raise SubscriptionStateError("The subscription's current period has a charge still being processed: "
                                         "update the payment method once it has settled.")
        tried = SubscriptionCharge.objects.filter(subscription=sub, period=period).aggregate(
            n=Max("try_number"))["n"]
        sub.mark_resumed(period=period, try_number=0 if tried is None else tried + 1, at=at)
        if SubscriptionCharge.objects.filter(subscription=sub, period=period, status=ChargeStatus.SUCCEEDED).exists():
            # the period in progress is paid already (an older period's debit was returned after
            # it was paid, and that one's retries were spent): nothing is charged now, the
            # subscription is active again and goes on with the first period not paid
            nxt = _first_unpaid_after(sub, period)
            sub.mark_paid(next_period=nxt, tries=_next_try(sub, nxt),
                          next_charge_at=recurring.period_start(sub.anchor, sub.interval, sub.interval_count, nxt))
            sub.save()
            _emit(sub, "subscription.updated", "subscription.recovered")
            return sub, False
    sub.save()
    _emit(sub, "subscription.updated")
    return sub, resumed


@transaction.atomic(durable=True)
def subscription_cancel(*, merchant: Merchant, subscription_id: str, actor: str = "api",
                        now_: dt.datetime | None = None) -> Subscription:
    """Cancel at once: no further charge. A charge already under way still settles (its payment
    stands; refund it if needed). Canceling twice answers the canceled subscription."""
    sub = _locked(merchant, subscription_id)
    if sub.status == SS.CANCELED:
        return sub
    sub.mark_canceled(at=now_ or now())
    sub.save()
    _emit(sub, "subscription.canceled")
    logger.info("subscription %s canceled by %s", sub.id, actor)
    return sub


# --- charging ---------------------------------------------------------------------------
def charge_key(subscription_id: str, period: int, try_number: int) -> str:
    return f"{subscription_id}:p{period}:t{try_number}"


def subscription_charge(*, subscription_id: str, now_: dt.datetime | None = None) -> str:
    """Charge the subscription's due period (or dunning retry) once. Safe to run any number of
    times, concurrently: returns what happened (`not_due`, `pending`, `succeeded`, `failed`)."""
    at = now_ or now()
    charge_id = _charge_claim(subscription_id=subscription_id, at=at)
    if charge_id is None:
        return "not_due"
    if charge_id == ENDED:
        return "canceled"
    charge = SubscriptionCharge.objects.select_related("subscription").get(pk=charge_id)
    sub = charge.subscription
    error_code = error_message = ""
    try:
        payment = payment_create(
            merchant=sub.merchant, amount=sub.amount, currency=sub.currency, customer=sub.customer_id,
            payment_method=sub.payment_method_id, off_session=True, idempotency_key=charge.idempotency_key,
            description=sub.description or f"Subscription {sub.id}",
            metadata={"subscription": sub.id, "subscription_period": str(charge.period)},
            actor=ACTOR, with_row=lambda row: _charge_still_due(sub.id, payment_method_id=row.payment_method_id),
        )
    except InvalidRequestError as exc:  # the method cannot be charged at all (detached, expired…)
        logger.warning("subscription %s: charge %s refused before the PSP: %s", sub.id, charge.idempotency_key,
                       exc.code)
        error_code, error_message = exc.code, exc.message
        payment = None
    except PayeraError:  # e.g. the secrets backend is down: the charge stays pending, next tick retries
        logger.warning("subscription %s: charge %s could not be made now", sub.id, charge.idempotency_key,
                       exc_info=True)
        return "pending"
    return subscription_charge_settle(charge_id=charge.id, payment_id=payment.id if payment else None,
                                      error_code=error_code, error_message=error_message, now_=at)


class SubscriptionNotChargeableError(InvalidRequestError):
    code = "subscription_canceled"


class SubscriptionChangedError(PayeraError):
    """Not a refusal: the charge is made again, with the subscription as it is now, by the next tick."""

    code = "subscription_changed"


ENDED = -1  # `_charge_claim`: the period paid last ended with `cancel_at_period_end`: canceled, nothing charged


def _charge_still_due(subscription_id: str, *, payment_method_id: str | None) -> None:
    """In the charge's payment insert transaction, before any PSP call: the subscription's row lock
    orders the insert against a cancel or an update that committed after the claim. Canceled (or
    unpaid) since: nothing is inserted or sent; its payment method changed since (the customer gave
    a new card): nothing is inserted or sent now and the charge stays pending, so the next tick
    charges the new method; otherwise the payment is recorded and a later cancel or update finds it
    under way."""
    sub = subscription_lock(subscription_id)
    if sub.status not in (SS.ACTIVE, SS.PAST_DUE):
        raise SubscriptionNotChargeableError(f"The subscription was {sub.status} before its charge was made.",
                                             code=f"subscription_{sub.status}")
    if sub.payment_method_id != payment_method_id:
        raise SubscriptionChangedError(f"Subscription {sub.id}'s payment method changed before its charge was made.")
    if sub.ends_at_period_end:
        # set to cancel at the end of its period after the tick claimed the next one: nothing is
        # inserted or sent; the charge stays pending and the next tick's claim ends the subscription
        # (or, the flag unset meanwhile, charges it)
        raise SubscriptionChangedError(f"Subscription {sub.id} was set to cancel at the end of its period before "
                                       "its charge was made.")


@transaction.atomic(durable=True)
def _charge_claim(*, subscription_id: str, at: dt.datetime) -> int | None:
    sub = subscription_lock(subscription_id)
    if sub.status not in (SS.ACTIVE, SS.PAST_DUE) or sub.next_charge_at is None or sub.next_charge_at > at:
        return None
    if sub.ends_at_period_end and _cancel_at_period_end(sub):
        return ENDED
    key = charge_key(sub.id, sub.current_period, sub.retries)
    charge, _ = SubscriptionCharge.objects.get_or_create(
        subscription=sub, period=sub.current_period, try_number=sub.retries, defaults={"idempotency_key": key},
    )
    if charge.status != ChargeStatus.PENDING:  # settled, yet the subscription did not move: never again
        logger.error("subscription %s: charge %s settled but still due", sub.id, key)
        return None
    return charge.id


def _cancel_at_period_end(sub: Subscription) -> bool:
    """Under the subscription's lock, at the claim of an `active` subscription set to cancel at
    the end of its period, due: the period paid last has ended, so it is canceled (`canceled_at`:
    that period's end) instead of charging the next one — unless the next period's payment was
    made before the flag was set (its payment recorded: it settles as any charge; returns False).
    A try claimed but never sent is failed `subscription_cancel_at_period_end`: nothing charged."""
    charge = SubscriptionCharge.objects.filter(subscription=sub, period=sub.current_period,
                                               try_number=sub.retries).first()
    if charge is not None and (charge.payment_id or Payment.objects.filter(
            merchant_id=sub.merchant_id, idempotency_key=charge.idempotency_key).exists()):
        return False
    if charge is not None and charge.status == ChargeStatus.PENDING:
        charge.status = ChargeStatus.FAILED
        charge.decline_code = "subscription_cancel_at_period_end"
        charge.save(update_fields=["status", "decline_code", "updated_at"])
    sub.mark_canceled(at=sub.next_charge_at)
    sub.save()
    _emit(sub, "subscription.canceled")
    logger.info("subscription %s canceled at the end of its period (%s)", sub.id, sub.canceled_at)
    return True


@transaction.atomic(durable=True)
def subscription_charge_settle(*, charge_id: int, payment_id: str | None = None, error_code: str = "",
                               error_message: str = "", now_: dt.datetime | None = None) -> str:
    """Settle a pending charge from its payment's status (or a refusal before any payment):
    transition the subscription and record its events. Idempotent."""
    at = now_ or now()
    charge0 = SubscriptionCharge.objects.only("subscription_id").get(pk=charge_id)
    sub = subscription_lock(charge0.subscription_id)
    charge = SubscriptionCharge.objects.select_for_update(of=("self",)).select_related("payment").get(pk=charge_id)
    if charge.status != ChargeStatus.PENDING:
        return str(charge.status)
    if charge.payment_id is None:  # this call's payment, or one a crashed tick made with the key
        payment_id = payment_id or Payment.objects.filter(
            merchant_id=sub.merchant_id, idempotency_key=charge.idempotency_key).values_list("pk", flat=True).first()
        if payment_id:
            charge.payment_id = payment_id
            charge.save(update_fields=["payment", "updated_at"])
            charge.refresh_from_db()
    payment = charge.payment
    if payment is not None and payment.status == PS.SUCCEEDED:
        _charge_succeeded(sub, charge, at=at)
        return "succeeded"
    if payment is not None and payment.status not in (PS.FAILED, PS.CANCELED):
        return "pending"  # processing (asynchronous PSP) or held: the next tick looks again
    if payment is not None:
        error = payment.last_error or {}
        code = error.get("decline_code") or error.get("code") or "payment_failed"
        decline_class = (payment.attempts.order_by("-sequence").values_list("decline_class", flat=True).first()
                         or "")
        last_error = {"code": error.get("code") or "payment_failed", "decline_code": error.get("decline_code"),
                      "message": error.get("message") or f"The charge {payment.id} failed."}
    else:
        code, decline_class = error_code or "payment_failed", "hard"
        last_error = {"code": code, "decline_code": None,
                      "message": error_message or "The charge was refused before any payment was made."}
    charge.status = ChargeStatus.FAILED
    charge.decline_code = code[:64]
    charge.save(update_fields=["status", "decline_code", "updated_at"])
    if not can_proceed(sub.mark_past_due):  # canceled meanwhile
        return "failed"
    if charge.period > sub.current_period:
        # a later period's charge, under way when an older period's debit was returned (the
        # subscription went back to collecting that one): its failure is kept in its charge row and
        # its dunning set aside (`later_dunning`), restored once the subscription comes back to it
        _later_failed(sub, charge, code=code, decline_class=decline_class, error=last_error, at=at)
        sub.save()
        _emit(sub, "subscription.payment_failed")
        return "failed"
    if sub.ends_at_period_end:
        # the next period's charge, made before the merchant set the flag, failed: nothing is paid
        # after the period that has ended, so it ends there (as the claim would have) instead of
        # being dunned — a retry would charge a period the merchant said would not be served
        sub.mark_canceled(at=sub.next_charge_at or at)
        sub.save()
        _emit(sub, "subscription.payment_failed", "subscription.canceled")
        logger.info("subscription %s: charge %s failed with cancel_at_period_end: canceled at %s", sub.id,
                    charge.idempotency_key, sub.canceled_at)
        return "failed"
    failures = sub.retries + 1
    # dunning counts from when the period's charge was due (not from when a tick ran), so the
    # retries land on the schedule whatever the scheduler's delay
    started = sub.dunning_started_at or sub.next_charge_at or at
    retry_at = None
    if recurring.decline_retryable(code, decline_class) and sub.resumed_at is None:  # a resume: one try
        retry_at = recurring.next_retry_at(dunning_started_at=started, failures=failures, failed_at=at,
                                           schedule_days=list(setting("SUBSCRIPTIONS_RETRY_DAYS", [1, 3, 5, 7])))
    events = ["subscription.payment_failed"]
    if retry_at is not None:
        if sub.status != SS.PAST_DUE:
            events.append("subscription.past_due")
        sub.mark_past_due(decline_code=code, retry_at=retry_at, at=started, error=last_error)
    else:
        sub.mark_unpaid(decline_code=code, at=started, error=last_error)
        events.append("subscription.unpaid")
    sub.save()
    _emit(sub, *events)
    return "failed"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _at(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _later_set_aside(sub: Subscription) -> None:
    """Before the subscription goes back to an older, returned period: the dunning of the period
    it was past due on is kept (`later_dunning`), to be taken up where it was once the older one is
    paid, instead of starting over (or being forgotten: `active`, `recovered`, its failures unsaid)."""
    later = dict(sub.later_dunning or {})
    later[str(sub.current_period)] = {
        "retries": sub.retries, "dunning_started_at": _iso(sub.dunning_started_at),
        "next_charge_at": _iso(sub.next_charge_at), "last_decline_code": sub.last_decline_code,
        "last_error": sub.last_error,
    }
    sub.later_dunning = later


def _later_failed(sub: Subscription, charge: SubscriptionCharge, *, code: str, decline_class: str, error: dict,
                  at: dt.datetime) -> None:
    """A later period's charge failed while an older period is collected: its dunning as it would
    have gone (the schedule counted from when it was due, or from where its set-aside dunning
    started), kept for when the subscription reaches it; `next_charge_at` null: final (unpaid)."""
    later = dict(sub.later_dunning or {})
    kept = later.get(str(charge.period)) or {}
    started = _at(kept.get("dunning_started_at")) or recurring.period_start(
        sub.anchor, sub.interval, sub.interval_count, charge.period)
    retry_at = None
    if recurring.decline_retryable(code, decline_class):
        retry_at = recurring.next_retry_at(dunning_started_at=started, failures=charge.try_number + 1, failed_at=at,
                                           schedule_days=list(setting("SUBSCRIPTIONS_RETRY_DAYS", [1, 3, 5, 7])))
    later[str(charge.period)] = {"retries": charge.try_number + 1, "dunning_started_at": _iso(started),
                                 "next_charge_at": _iso(retry_at), "last_decline_code": code[:64], "last_error": error}
    sub.later_dunning = later


def _tries(sub: Subscription, period: int) -> int:
    """How many tries `period` has had (its charge rows): the next try's number."""
    tried = SubscriptionCharge.objects.filter(subscription=sub, period=period).aggregate(n=Max("try_number"))["n"]
    return 0 if tried is None else tried + 1


def _next_try(sub: Subscription, period: int) -> int:
    """The try of `period` the subscription goes on with when it comes (back) to it: one still
    under way (a debit made while an older, returned period was collected: its payment is replayed
    by its key and settles), else a new one (`_tries`). Never a second try of a period beside one
    in flight: both collected, the period would be paid twice."""
    pending = SubscriptionCharge.objects.filter(subscription=sub, period=period, status=ChargeStatus.PENDING) \
        .order_by("-try_number").values_list("try_number", flat=True).first()
    return pending if pending is not None else _tries(sub, period)


def _first_unpaid_after(sub: Subscription, period: int) -> int:
    """The first period after `period` without a succeeded charge: after a returned period is paid
    again, the periods paid meanwhile are not charged twice."""
    paid = set(SubscriptionCharge.objects.filter(subscription=sub, period__gt=period,
                                                 status=ChargeStatus.SUCCEEDED).values_list("period", flat=True))
    nxt = period + 1
    while nxt in paid:
        nxt += 1
    return nxt


def _charge_succeeded(sub: Subscription, charge: SubscriptionCharge, *, at: dt.datetime) -> None:
    """Under the subscription's and the charge's locks: the charge's payment succeeded."""
    charge.status = ChargeStatus.SUCCEEDED
    charge.save(update_fields=["status", "updated_at"])
    if charge.period > sub.current_period or not can_proceed(sub.mark_paid):
        # canceled once the charge was under way, or a later period's charge while an older,
        # returned period is collected again: the payment stands (that period is paid, its
        # set-aside dunning is over), the subscription stays where it is, the merchant is told
        if sub.later_dunning and str(charge.period) in sub.later_dunning:
            sub.later_dunning = {k: v for k, v in sub.later_dunning.items() if k != str(charge.period)} or None
            sub.save()
        _emit(sub, "subscription.payment_succeeded")
        return
    was_past_due = sub.status == SS.PAST_DUE
    nxt = _first_unpaid_after(sub, charge.period)
    later = {k: v for k, v in (sub.later_dunning or {}).items() if int(k) >= nxt}
    kept = later.pop(str(nxt), None)
    sub.later_dunning = later or None
    if kept is not None:  # a returned period paid again; the one after it was in dunning: it goes on
        _later_resume(sub, nxt, kept, at=at)
        return
    sub.mark_paid(next_period=nxt, tries=_next_try(sub, nxt),
                  next_charge_at=recurring.period_start(sub.anchor, sub.interval, sub.interval_count, nxt))
    sub.save()
    _emit(sub, "subscription.payment_succeeded", *(["subscription.recovered"] if was_past_due else []))


def _later_resume(sub: Subscription, period: int, kept: dict, *, at: dt.datetime) -> None:
    """Take up the set-aside dunning of `period` (`later_dunning`): past due on it with its tries,
    its dunning start, its last error and its next retry slot — a slot that passed while the older
    period was collected moves to the schedule's first delay after now (as a failure learnt late);
    a final failure (no slot) makes it `unpaid`. Not `recovered`: a period is still unpaid."""
    tries = _next_try(sub, period)
    error = kept.get("last_error")
    code = kept.get("last_decline_code") or "payment_failed"
    retry_at = _at(kept.get("next_charge_at"))
    if retry_at is None:
        sub.current_period = period
        sub.retries = tries
        sub.mark_unpaid(decline_code=code, at=_at(kept.get("dunning_started_at")) or at, error=error)
        sub.save()
        _emit(sub, "subscription.payment_succeeded", "subscription.unpaid")
        return
    if retry_at <= at:
        retry_at = at + dt.timedelta(days=list(setting("SUBSCRIPTIONS_RETRY_DAYS", [1, 3, 5, 7]))[0])
    sub.mark_paid_later_due(period=period, retries=tries, dunning_started_at=_at(kept.get("dunning_started_at")),
                            next_charge_at=retry_at, decline_code=code, error=error)
    sub.save()
    _emit(sub, "subscription.payment_succeeded")


def subscription_charge_returned(*, payment: Payment, dispute_id: str, psp_reason: str = "",
                                 now_: dt.datetime | None = None) -> str:
    """A debit that paid a subscription's charge was returned by the shopper's bank (a dispute
    `debit_returned` on `payment` became `lost`: a return opened lost, or a claim lost later).
    Called by the dispute's `mark_lost` (`disputes._debit_returned`), in its transaction and
    under the payment's lock (the payment before the subscription, as everywhere); the dispute is
    lost once per PSP dispute, and the charge moves `succeeded` → `returned` once under the
    subscription's lock, so a repeated or concurrent return, or a tick at the same moment, reopens
    the period once.

    The period the debit paid is due again (docs/payments.md "Subscriptions"): the subscription
    goes `past_due` on it (`subscription.past_due`, or `subscription.updated` if it was past due on
    a later period), retried on the dunning schedule counted from the return, the returned try
    counted as one of the period's failed tries (spent: `unpaid`); paid again, it carries on with
    the first period not paid. A canceled subscription is left as it is; an unpaid one stays
    unpaid (nothing is collected; a resume charges the period in progress as always): only the
    charge is marked returned. Returns what happened (a note for the logs)."""
    charge0 = SubscriptionCharge.objects.filter(payment_id=payment.pk).only("pk", "subscription_id").first()
    if charge0 is None:
        return "not a subscription charge"
    at = now_ or now()
    sub = subscription_lock(charge0.subscription_id)
    charge = SubscriptionCharge.objects.select_for_update(of=("self",)).get(pk=charge0.pk)
    if sub.status == SS.CANCELED:
        return "canceled: not reopened"
    if charge.status == ChargeStatus.PENDING and payment.status == PS.SUCCEEDED:
        _charge_succeeded(sub, charge, at=at)  # returned before a tick settled it: it was paid, then returned
    if charge.status != ChargeStatus.SUCCEEDED:
        return f"charge {charge.status}: nothing to reopen"
    charge.status = ChargeStatus.RETURNED
    charge.decline_code = "debit_returned"
    charge.save(update_fields=["status", "decline_code", "updated_at"])
    if sub.status == SS.UNPAID:  # not collected any more (a resume charges the period in progress)
        return f"charge of period {charge.period} returned, subscription {sub.status}"
    dead = _method_dead(sub)
    if sub.status == SS.PAST_DUE and charge.period >= sub.current_period and not dead:
        # past due on an older period: its dunning reaches this one
        return f"charge of period {charge.period} returned, subscription {sub.status}"
    error = {"code": "debit_returned", "decline_code": psp_reason or None,
             "message": f"The debit {payment.pk} of period {charge.period} was returned by the bank ({dispute_id})."}
    if dead:
        # the bank said the mandate or the account can never be debited again (MD01, AC04, AC06,
        # MD07: the mandate ended in this transaction): no dunning retry could pass, so none is
        # tried against it; unpaid at once on its oldest unpaid period, until the merchant gives
        # it another payment method (the resume path charges the period in progress)
        error["message"] += f" Its payment method {sub.payment_method_id} can no longer be charged: " \
                            "give the subscription another payment method."
        if charge.period < sub.current_period:
            sub.current_period = charge.period
            sub.retries = _tries(sub, charge.period)
        sub.mark_unpaid(decline_code="debit_returned", at=at, error=error)
        sub.save()
        _emit(sub, "subscription.unpaid")
        logger.info("subscription %s: debit %s of period %s returned (%s), its method is dead: unpaid", sub.id,
                    payment.pk, charge.period, dispute_id)
        return f"period {charge.period} reopened: unpaid (payment method no longer chargeable)"
    if sub.status == SS.PAST_DUE and sub.current_period > charge.period:
        _later_set_aside(sub)  # the later period's dunning is taken up once this one is paid
    tries = _tries(sub, charge.period)
    retry_at = recurring.next_retry_at(dunning_started_at=at, failures=tries,
                                       schedule_days=list(setting("SUBSCRIPTIONS_RETRY_DAYS", [1, 3, 5, 7])))
    was = sub.status
    if retry_at is None:  # the period had spent its retries before this try paid it
        sub.current_period = charge.period
        sub.retries = tries
        sub.mark_unpaid(decline_code="debit_returned", at=at, error=error)
        events = ["subscription.unpaid"]
    else:
        sub.mark_returned(period=charge.period, tries=tries, retry_at=retry_at, at=at, error=error)
        events = ["subscription.past_due" if was == SS.ACTIVE else "subscription.updated"]
    sub.save()
    _emit(sub, *events)
    logger.info("subscription %s: debit %s of period %s returned (%s): %s", sub.id, payment.pk, charge.period,
                dispute_id, sub.status)
    return f"period {charge.period} reopened: {sub.status}"


def _method_dead(sub: Subscription) -> bool:
    """Whether the subscription's payment method can never be charged again: detached, or its
    mandate ended (a SEPA return whose code says the mandate or the account is gone)."""
    pm = sub.payment_method
    if pm.detached_at is not None:
        return True
    try:
        method_mandate(pm)
    except MandateInactiveError:
        return True
    return False


def subscriptions_run(*, now_: dt.datetime | None = None, limit: int = 500) -> dict:
    """One scheduler tick: settle charges whose payment has ended since, then charge every
    subscription due at `now_` (a period or a dunning retry; one per subscription per tick).
    Safe to run twice and concurrently."""
    at = now_ or now()
    counts: dict[str, int] = {}
    pending = SubscriptionCharge.objects.filter(status=ChargeStatus.PENDING).exclude(payment=None).exclude(
        payment__status__in=[*UNDER_WAY, PS.REQUIRES_CONFIRMATION]
    ).values_list("pk", flat=True)[:limit]
    for charge_id in list(pending):
        outcome = subscription_charge_settle(charge_id=charge_id, now_=at)
        counts[f"settled_{outcome}"] = counts.get(f"settled_{outcome}", 0) + 1
    # a subscription whose charge is under way at the PSP (processing for days, a SEPA debit) is
    # settled by the loop above once its payment ends: it takes no slot here, or enough of them
    # (the oldest due) would starve every other subscription of the tick
    under_way = SubscriptionCharge.objects.filter(status=ChargeStatus.PENDING, payment__status__in=UNDER_WAY)
    due = Subscription.objects.filter(status__in=[SS.ACTIVE, SS.PAST_DUE], next_charge_at__lte=at).exclude(
        pk__in=under_way.values("subscription_id")
    ).order_by("next_charge_at").values_list("pk", flat=True)[:limit]
    for sub_id in list(due):
        try:
            outcome = subscription_charge(subscription_id=sub_id, now_=at)
        except Exception:  # one subscription's bug never stops the others; next tick retries
            logger.exception("subscription %s: charge failed unexpectedly", sub_id)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
