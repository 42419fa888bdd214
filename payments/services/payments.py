"""Payments: create, confirm (routing, cascading, attempts), capture, cancel, expiry.

Every PSP call takes three steps (STYLE): a durable block records the intent (attempt, capture,
void) and commits; the call runs under `outside_transaction()`; a durable block records the
outcome with the transition, the PaymentEvent, the ledger posting and the outbox event.
The payment's one in-flight mutation is claimed in the first block and released in the last.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import secrets
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.db.models.functions import Length
from django_fsm import can_proceed

from payera.audit.models import audit_entries_batched
from payera.core import metrics
from payera.core.db import outside_transaction
from payera.core.errors import InvalidRequestError, NotFoundError, PayeraError
from payera.core.money import MAX_AMOUNT, currency_normalize
from payera.core.rowsql import precompiled_select
from payera.idempotency.services import idempotency_answer_record, idempotency_resource_record
from payera.merchants.models import Merchant
from payera.secrets.services import key_delete_material
from payments import routing
from payments.circuit import circuit_open_set, circuit_record_failure
from payments.locks import payment_lock, payment_lock_of_attempt
from payments.method_types import method_currency_check, method_spec
from payments.models import (
    AS,
    NOT_AT_PSP,
    PS,
    Capture,
    CaptureMethod,
    Customer,
    DeclineCode,
    OperationStatus,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    PaymentMethodCredential,
    RoutingRule,
    SepaMandate,
)
from payments.postings import capture_journals, fee_rule
from payments.routing_models import BinRange
from payments.selectors import payment_get
from payments.serializers import payment_rendered
from payments.services.booking_sync import booking_guard, payment_in_escrow
from payments.services.common import (
    PaymentInProgressError,
    PaymentStateError,
    emit,
    inflight_claim,
    inflight_release,
    now,
    operation_for_outcome,
    post,
    postings_last,
    recovery_delay,
    setting,
    transition,
    transition_logged,
)
from payments.services.customers import validate_metadata
from payments.services.methods import (
    MandateInactiveError,
    MethodInput,
    PaymentMethodNotReusableError,
    PaymentMethodUnsupportedError,
    mandate_end_by_code,
    method_expired,
    method_mandate,
    method_off_session_data,
    method_off_session_plan,
    method_psp_data,
    method_tokenize,
    method_validate,
)
from psp_adapters.errors import PspError, PspProtocolError, PspTimeoutError, PspUnavailableError
from psp_adapters.port import (
    AuthorizeRequest,
    CaptureRequest,
    Decline,
    DeclineClass,
    Outcome,
    PspReference,
    PspState,
    VoidRequest,
)
from psp_adapters.port import (
    DeclineCode as PortDeclineCode,
)
from psp_adapters.registry import get_adapter

logger = logging.getLogger("payera.payments")

V = routing.AttemptVerdict


class PaymentNotFoundError(NotFoundError):
    default_message = "No such payment."


class PaymentNotCapturableError(PaymentStateError):
    code = "payment_not_capturable"
    default_message = "This payment cannot be captured (it is not awaiting capture)."


class PaymentNotCancelableError(PaymentStateError):
    code = "payment_not_cancelable"
    default_message = "This payment cannot be canceled in its current status."


class PspOperationFailedError(PayeraError):
    type = "invalid_request_error"
    code = "psp_operation_failed"
    http_status = 400
    default_message = "The payment service provider refused the operation."


# --- helpers ----------------------------------------------------------------------------
def _owned(merchant: Merchant, payment_id: str) -> None:
    if not isinstance(payment_id, str) or not Payment.objects.filter(pk=payment_id, merchant=merchant).exists():
        raise PaymentNotFoundError()


def _locked(merchant: Merchant | None, payment_id: str) -> Payment:
    try:
        payment = payment_lock(payment_id)
    except Payment.DoesNotExist:
        raise PaymentNotFoundError() from None
    if merchant is not None and payment.merchant_id != merchant.id:
        raise PaymentNotFoundError()
    return payment


def _enabled_rules_of(merchant_id: str):
    return RoutingRule.objects.filter(merchant_id=merchant_id, enabled=True)


def _attempts_of(payment_id: str):
    return PaymentAttempt.objects.filter(payment_id=payment_id)


def _routing_rules(merchant: Merchant) -> list[routing.RoutingRule]:
    """The merchant's routing input: its enabled routing rules (admin: Routing rules) or, without
    any, its ordered `connectors` list. Loaded once per request and decided per payment id."""
    stored = precompiled_select(RoutingRule, _enabled_rules_of, merchant.pk)  # read per request, never cached
    if stored:
        return [routing.RoutingRule(connector=r.connector, priority=r.priority, weight=r.weight,
                                    min_amount=r.min_amount, max_amount=r.max_amount, **r.condition_sets())
                for r in stored]
    return [routing.RoutingRule(connector=name, priority=i) for i, name in enumerate(merchant.connectors or [])]


def _route(*, merchant: Merchant, payment_id: str, amount: int, currency: str, method_type: str,
           brand: str | None, bin_: str = "", rules: list[routing.RoutingRule] | None = None,
           circuits: dict[tuple[str, ...], frozenset[str]] | None = None) -> list[str]:
    """The connectors to try, in order (`rules`: the merchant's `_routing_rules`, if loaded;
    `circuits`: the open circuits already read in this request, filled on first use — one cache
    round trip per request, not one per routing decision)."""
    if rules is None:
        rules = _routing_rules(merchant)
    names = list(dict.fromkeys(r.connector for r in rules if r.connector in settings.PSP_CONNECTORS))
    caps: dict[str, routing.ConnectorCapabilities] = {}
    for name in names:
        adapter_caps = get_adapter(name).capabilities
        caps[name] = routing.ConnectorCapabilities(
            method_types=frozenset(m.value for m in adapter_caps.payment_methods),
            currencies=adapter_caps.currencies_for(method_type) if method_type in adapter_caps.payment_methods
            else adapter_caps.currencies,
        )
    country = bin_country(bin_) if bin_ and any(r.bin_countries for r in rules) else None
    return routing.connector_order(
        payment=routing.RoutingInput(payment_id=payment_id, amount=amount, currency=currency,
                                     method_type=method_type, brand=brand, bin_country=country),
        rules=rules,
        capabilities=caps,
        open_circuits=_open_circuits(names, circuits),
        max_attempts=setting("PAYMENTS_MAX_ATTEMPTS", 3),
    )


def _open_circuits(names: list[str], circuits: dict[tuple[str, ...], frozenset[str]] | None) -> frozenset[str]:
    if circuits is None:
        return circuit_open_set(names)
    key = tuple(names)
    if key not in circuits:
        circuits[key] = circuit_open_set(names)
    return circuits[key]


def bin_country(bin_: str) -> str | None:
    """The issuing country of a card by the longest matching prefix in the BIN table."""
    prefixes = [bin_[:i] for i in range(1, min(len(bin_), 8) + 1)]
    row = BinRange.objects.filter(prefix__in=prefixes).order_by(Length("prefix").desc()).values("country").first()
    return row["country"] if row else None


def _unsupported() -> PaymentMethodUnsupportedError:
    return PaymentMethodUnsupportedError(
        "No connector of this merchant supports this payment method and currency.", param="payment_method_data"
    )


_MANDATE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def mandate_reference_new() -> str:
    """A SEPA mandate reference: at most 35 characters of the SEPA character set. Letters only
    (17 of them: 80 bits, as the hex it replaced): a random run of digits could pass the Luhn check
    and be masked as a card number in logs, or be reported as one by a leak scan."""
    return "PAYERA-" + "".join(secrets.choice(_MANDATE_ALPHABET) for _ in range(17))


def mandate_acceptance(mandate_data: object, *, shopper_ip: str | None, shopper_user_agent: str | None) -> dict:
    """The shopper's online acceptance of the mandate: `mandate_data.customer_acceptance.online`
    (`ip_address`, `user_agent`) when given, else the request's own IP and user agent."""
    param = "mandate_data[customer_acceptance][online]"
    online: object = {}
    if mandate_data not in (None, {}):
        acceptance = mandate_data.get("customer_acceptance") if isinstance(mandate_data, dict) else None
        online = acceptance.get("online") if isinstance(acceptance, dict) else None
        if not isinstance(online, dict):
            raise InvalidRequestError("mandate_data needs customer_acceptance.online.", param=param)
    assert isinstance(online, dict)
    ip = online.get("ip_address", shopper_ip)
    agent = online.get("user_agent", shopper_user_agent)
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(str(ip)))
        except ValueError:
            raise InvalidRequestError("ip_address is not an IP address.", param=f"{param}[ip_address]") from None
    if agent is not None and not isinstance(agent, str):
        raise InvalidRequestError("user_agent must be a string.", param=f"{param}[user_agent]")
    return {"shopper_ip": ip, "shopper_user_agent": (agent or "")[:512]}


def _fee(payment: Payment, gross: int) -> int:
    """The merchant's fee on a capture (payment_lock loaded the merchant and the method)."""
    pm_type = payment.payment_method.type if payment.payment_method_id else "card"
    schedule = payment.merchant.fee_schedule
    return fee_rule(setting("PAYMENT_FEE_SCHEDULES", {}), schedule, pm_type).fee(gross, payment.currency)


def decline_normalize(connector: str, decline: Decline | None) -> Decline:
    """The operations team's table (DeclineCode) overrides the adapter's default mapping."""
    if decline is None:
        return Decline(code=PortDeclineCode.GENERIC_DECLINE, decline_class=DeclineClass.HARD)
    if decline.psp_code:
        row = DeclineCode.objects.filter(psp=connector, psp_code=decline.psp_code).first()
        if row is not None:
            try:
                return Decline(code=PortDeclineCode(row.code), decline_class=DeclineClass(row.decline_class),
                               psp_code=decline.psp_code, message=decline.message)
            except ValueError:
                logger.warning("decline table row %s is not a known code/class", row.pk)
    return decline


def last_error_of(decline: Decline, method_type: str = "card") -> dict:
    spec = method_spec(method_type)
    code = spec.decline_error_code if decline.code != PortDeclineCode.PROCESSING_ERROR else "processing_error"
    return {"code": code, "decline_code": decline.code.value,
            "message": decline.message or f"{spec.decline_subject} was declined ({decline.code.value})."}


# --- create -----------------------------------------------------------------------------
def payment_create(
    *,
    merchant: Merchant,
    amount: int,
    currency: str,
    payment_method_data: dict | None = None,
    payment_method: str | None = None,
    customer: str | None = None,
    capture_method: str = CaptureMethod.AUTOMATIC,
    confirm: bool = True,
    setup_future_usage: str | None = None,
    off_session: bool = False,
    return_url: str | None = None,
    description: str | None = None,
    metadata: dict | None = None,
    mandate_data: dict | None = None,
    shopper_ip: str | None = None,
    shopper_user_agent: str | None = None,
    actor: str = "api",
    idempotency_key: str | None = None,
    with_row: Callable[[Payment], object] | None = None,
) -> Payment:
    """Validate everything (400 before any write or PSP call), tokenize at once, then confirm
    unless `confirm=False`. What the method type allows (currency, saving for later, a mandate)
    is asked of its spec (`payments.method_types`); `shopper_ip`/`shopper_user_agent` (the API
    request's) are the mandate's acceptance unless `mandate_data` names the shopper's.

    `off_session=True` is a merchant-initiated charge (MIT) of a saved `payment_method`: it is
    flagged MIT to the PSP and routed to the connectors holding the method's credentials
    (`method_off_session_plan`). `idempotency_key` (internal callers such as the subscription
    scheduler) makes the create idempotent in the database: a second call with the key returns the
    first payment (confirming it only if it was never confirmed). `with_row(payment)` runs in the
    payment's insert transaction, before any PSP call (a booking is created with its payment,
    payments/services/bookings.py)."""
    if idempotency_key:  # the same key is the same effect, even if the method changed since
        existing = Payment.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _payment_replay(merchant, existing, confirm=confirm, actor=actor)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequestError("amount must be a positive integer in the currency's minor unit.", param="amount")
    if amount > MAX_AMOUNT:  # the ledger's bigint balances must never overflow (docs/api.md "Requests")
        raise InvalidRequestError(f"amount is too large: at most {MAX_AMOUNT} minor units.", param="amount")
    currency = currency_normalize(currency)
    if capture_method not in CaptureMethod.values:
        raise InvalidRequestError("capture_method must be automatic or manual.", param="capture_method")
    if setup_future_usage not in (None, "", "off_session"):
        raise InvalidRequestError("setup_future_usage must be off_session.", param="setup_future_usage")
    metadata = validate_metadata(metadata)
    cus = None
    if customer:
        cus = Customer.objects.filter(pk=customer, merchant=merchant).first() if isinstance(customer, str) else None
        if cus is None:
            raise NotFoundError("No such customer.", param="customer")
    if setup_future_usage and cus is None:
        raise InvalidRequestError("setup_future_usage needs a customer.", param="customer")
    if bool(payment_method_data) == bool(payment_method):
        raise InvalidRequestError(
            "Give either payment_method_data or payment_method.",
            param="payment_method_data", code="parameter_missing" if not payment_method else "parameter_invalid",
        )
    method: MethodInput | None = None
    saved: PaymentMethod | None = None
    if payment_method_data:
        method = method_validate(payment_method_data, today=now().date())
        method_type = method.type
        brand = method.card.brand if method.card else None
        bin_ = method.card.bin if method.card else ""
    else:
        saved = PaymentMethod.objects.filter(pk=payment_method, merchant=merchant).first() \
            if isinstance(payment_method, str) else None
        if saved is None or (saved.customer_id and saved.customer_id != (cus.pk if cus else None)):
            raise NotFoundError("No such payment method.", param="payment_method")
        if saved.customer_id is None:
            raise InvalidRequestError("This payment method is not saved to a customer.", param="payment_method")
        if saved.detached_at is not None:
            raise InvalidRequestError("This payment method was detached from its customer and cannot be used "
                                      "again.", param="payment_method", code="payment_method_detached")
        if method_expired(saved):
            raise InvalidRequestError("The saved card has expired.", param="payment_method", code="expired_card")
        method_type, brand, bin_ = saved.type, saved.card_brand or None, saved.card_bin
    spec = method_spec(method_type)
    method_currency_check(method_type, currency)
    if setup_future_usage and not spec.recurring:
        raise InvalidRequestError(f"A {method_type} payment method cannot be saved for later use.",
                                  param="setup_future_usage", code="payment_method_not_reusable")
    if off_session and not spec.recurring:
        raise InvalidRequestError(f"A {method_type} payment method cannot be charged off-session.",
                                  param="off_session", code="payment_method_not_reusable")
    if off_session and spec.redirect:
        raise InvalidRequestError("A redirect payment method needs the shopper.", param="off_session")
    if saved is not None:
        method_mandate(saved)  # a SEPA method's mandate must be active (400 mandate_inactive)
    mandate = None
    if method is not None and spec.mandate:
        mandate = mandate_acceptance(mandate_data, shopper_ip=shopper_ip, shopper_user_agent=shopper_user_agent)
    if off_session and saved is None:
        raise InvalidRequestError("An off-session payment charges a saved payment_method of the customer.",
                                  param="off_session")
    if off_session and setup_future_usage:
        raise InvalidRequestError("setup_future_usage saves a card on a customer-present payment, not off "
                                  "session.", param="setup_future_usage")
    rules = _routing_rules(merchant)
    circuits: dict[tuple[str, ...], frozenset[str]] = {}
    probe = _route(merchant=merchant, payment_id="pay_probe", amount=amount, currency=currency,
                   method_type=method_type, brand=brand, bin_=bin_, rules=rules, circuits=circuits)
    if not probe:
        raise _unsupported()
    if off_session and saved is not None and not method_off_session_plan(saved, probe):
        raise PaymentMethodNotReusableError(
            "This payment method holds no credential for off-session charges: its first, customer-present "
            "payment did not succeed on any of the merchant's connectors.", param="payment_method")
    # secrets backend: no transaction; a card saved for later gets its own key (crypto-shred)
    tokenized = method_tokenize(method, own_key=bool(setup_future_usage)) if method is not None else None
    try:
        payment, started = _payment_insert(
            merchant=merchant, amount=amount, currency=currency, capture_method=capture_method, customer=cus,
            saved=saved, tokenized_fields=tokenized.fields if tokenized else None,
            save_method=bool(setup_future_usage), off_session=bool(off_session),
            setup_future_usage=setup_future_usage or "", return_url=return_url or "", description=description or "",
            metadata=metadata, mandate=mandate, actor=actor, idempotency_key=idempotency_key, with_row=with_row,
            confirm_rules=rules if confirm else None, confirm_circuits=circuits,
        )
    except IntegrityError:
        _card_key_shred_if_unused(tokenized)
        if not idempotency_key:
            raise
        # a concurrent caller inserted this key first (the unique index waited for its commit)
        existing = Payment.objects.get(merchant=merchant, idempotency_key=idempotency_key)
        return _payment_replay(merchant, existing, confirm=confirm, actor=actor)
    except BaseException:  # e.g. the request's Idempotency-Key claimed by a concurrent send first
        _card_key_shred_if_unused(tokenized)
        raise
    if started is None:
        return payment
    plan, first = started
    return _confirm_attempts(merchant=merchant, payment=payment, plan=plan, first=first, method=method, actor=actor)


def _card_key_shred_if_unused(tokenized) -> None:
    """The card key of its own a saved card was encrypted under (`method_tokenize(own_key=True)`),
    when the payment method holding its ciphertext did not commit (the insert rolled back: a
    concurrent send of the same request won its key, a crash): shredded at once — else every such
    retry left a data key in the secrets backend that nothing uses and no detach can shred.
    Checked against the table, so a key a committed method holds is never touched."""
    key = (tokenized.fields.get("pan_key") if tokenized is not None else "") or ""
    if not key or PaymentMethod.objects.filter(pan_key=key).exists():
        return
    try:
        key_delete_material(key=key)
    except Exception:  # noqa: BLE001 - the request's own error matters more; the key holds nothing
        logger.warning("could not shred the unused card key of a rolled-back payment method", exc_info=True)


def _payment_replay(merchant: Merchant, payment: Payment, *, confirm: bool, actor: str) -> Payment:
    """The payment of an internal idempotency key exists: never a second one. Confirm it only if
    its creator crashed before confirming (nobody holds it: the confirm claim says so)."""
    if confirm and payment.status == PS.REQUIRES_CONFIRMATION and not payment.inflight:
        try:
            return payment_confirm(merchant=merchant, payment_id=payment.id, actor=actor)
        except MandateInactiveError:  # the mandate was revoked since: refused, as a new create is
            raise
        except PayeraError:  # confirmed meanwhile by the first caller
            logger.info("payment %s of an idempotency key is being confirmed elsewhere", payment.id)
    return Payment.objects.get(pk=payment.pk)


@transaction.atomic(durable=True)
def _payment_insert(*, merchant, amount, currency, capture_method, customer, saved, tokenized_fields, save_method,
                    off_session, setup_future_usage, return_url, description, metadata, actor,
                    idempotency_key=None, mandate=None, with_row=None,
                    confirm_rules: list[routing.RoutingRule] | None = None,
                    confirm_circuits: dict[tuple[str, ...], frozenset[str]] | None = None,
                    ) -> tuple[Payment, tuple[list[str], PaymentAttempt] | None]:
    """Insert the payment (and its new payment method). With `confirm_rules` (create and confirm:
    the merchant's routing input, loaded by the caller) the same transaction also begins the
    confirmation, as `_confirm_begin` does for an existing payment: the payment is born
    `processing` with its confirm claim (PaymentEvent requires_confirmation → processing) and its
    first attempt, all committed before the first PSP call — one transaction instead of two, and
    no row lock or re-read of a payment nobody else can see yet."""
    with audit_entries_batched():  # the method's and the payment's audit entries: one INSERT
        return _payment_insert_rows(
            merchant=merchant, amount=amount, currency=currency, capture_method=capture_method, customer=customer,
            saved=saved, tokenized_fields=tokenized_fields, save_method=save_method, off_session=off_session,
            setup_future_usage=setup_future_usage, return_url=return_url, description=description,
            metadata=metadata, actor=actor, idempotency_key=idempotency_key, mandate=mandate, with_row=with_row,
            confirm_rules=confirm_rules, confirm_circuits=confirm_circuits)


def _payment_insert_rows(*, merchant, amount, currency, capture_method, customer, saved, tokenized_fields,
                         save_method, off_session, setup_future_usage, return_url, description, metadata, actor,
                         idempotency_key, mandate, with_row, confirm_rules, confirm_circuits,
                         ) -> tuple[Payment, tuple[list[str], PaymentAttempt] | None]:
    pm = saved
    if tokenized_fields is not None:
        pm = PaymentMethod(merchant=merchant, customer=customer if save_method else None, **tokenized_fields)
        pm.save(force_insert=True)
        if mandate is not None:
            SepaMandate.objects.create(merchant=merchant, payment_method=pm, reference=mandate_reference_new(),
                                       signed_at=now(), **mandate)
    payment = Payment(
        merchant=merchant, amount=amount, currency=currency, capture_method=capture_method, customer=customer,
        payment_method=pm, setup_future_usage=setup_future_usage, off_session=off_session, return_url=return_url,
        description=description[:1000], metadata=metadata, idempotency_key=idempotency_key or "",
    )
    started = None
    if confirm_rules is not None:
        plan = _confirm_plan(merchant, payment, pm, rules=confirm_rules, circuits=confirm_circuits)
        inflight_claim(payment, "confirm")
        if not can_proceed(payment.mark_processing):
            raise PaymentStateError(f"A payment in status {payment.status} cannot be confirmed.")
        before = payment.status
        payment.mark_processing()
        payment.save(force_insert=True)
        transition_logged(payment, payment=payment, verb="mark_processing", before=before, actor=actor,
                          data={"plan": plan})
        started = plan
    else:
        payment.save(force_insert=True)
    if with_row is not None:
        with_row(payment)
    idempotency_resource_record(resource=payment.id)  # a retry after a crash answers this payment
    if started is None:
        return payment, None
    return payment, (started, _attempt_insert(payment, started[0], sequence=1))


# --- confirm ----------------------------------------------------------------------------
def payment_confirm(*, merchant: Merchant, payment_id: str, method: MethodInput | None = None,
                    actor: str = "api") -> Payment:
    """Route and authorize: one committed attempt per connector tried, the PSP called outside any
    transaction; soft declines and unavailable PSPs cascade (at most PAYMENTS_MAX_ATTEMPTS), a hard
    decline stops, an unknown outcome (timeout) stops with the payment `processing`."""
    plan, first = _confirm_begin(merchant=merchant, payment_id=payment_id, actor=actor)
    payment = Payment.objects.select_related("payment_method").get(pk=payment_id)
    return _confirm_attempts(merchant=merchant, payment=payment, plan=plan, first=first, method=method, actor=actor)


def _confirm_attempts(*, merchant: Merchant, payment: Payment, plan: list[str], first: PaymentAttempt,
                      method: MethodInput | None, actor: str) -> Payment:
    """The PSP calls of a confirmation whose claim and first attempt are committed: one attempt
    per connector (each committed before its call), the outcome recorded after each."""
    payment_id = payment.id
    recorded: list[Payment] = []
    # the PSP gets the STORED method (a saved card decrypted, its credentials, its SEPA mandate): a
    # detach or a mandate's revocation may have committed since `_confirm_begin` checked it (it locks
    # the method, not the payment)
    stored = method is None or payment.off_session
    pm_data = None
    for index, connector in enumerate(plan):
        # the first attempt was committed with the claim; each one before its PSP call
        attempt = first if index == 0 else attempt_start(payment_id=payment_id, connector=connector)
        if attempt is None:  # the confirmation was ended meanwhile (recovery): nothing more is sent
            recorded.clear()
            break
        ntid = None
        try:
            if payment.off_session:  # MIT: this connector's token, or the card with the CIT's NTID
                cred = method_off_session_data(payment.payment_method, connector)
                data, ntid = cred.payment_method, cred.network_transaction_id
            else:
                if pm_data is None:
                    pm_data = method_psp_data(payment.payment_method, method)
                data = pm_data
            # checked AFTER the data was read: a detach committing later is ordered after this call
            detached = stored and _method_detached(payment.payment_method_id)
        except MandateInactiveError as exc:  # revoked since `_confirm_plan` checked it: never sent
            _confirm_refused_record(attempt_id=attempt.id, error=exc, actor=actor)
            raise
        except Exception:  # a shredded number (detached meanwhile) cannot be decrypted
            if not (stored and _method_detached(payment.payment_method_id)):
                raise
            detached = True
        if detached:  # nothing is sent: the attempt fails, the payment with it, the claim is released
            error = InvalidRequestError(DETACHED_MESSAGE, param="payment_method", code="payment_method_detached")
            _confirm_refused_record(attempt_id=attempt.id, error=error, actor=actor)
            raise error
        request = AuthorizeRequest(
            reference=attempt.id,
            amount=payment.amount,
            currency=payment.currency,
            payment_method=data,
            capture=attempt.capture,
            off_session=payment.off_session,
            network_transaction_id=ntid,
            store_payment_method=payment.setup_future_usage == "off_session",
            return_url=return_url_for(payment.id),
            description=payment.description,
            metadata=dict(payment.metadata),
        )
        result, error = None, None
        try:
            with outside_transaction():
                result = get_adapter(connector).authorize(request)
        except PspError as exc:
            error = exc
        except Exception as exc:  # a bug after the request may have left: the outcome is unknown
            logger.exception("unexpected error authorizing %s on %s", attempt.id, connector)
            error = PspProtocolError(f"unexpected: {type(exc).__name__}", connector=connector)
        recorded.clear()
        verdict = attempt_record_outcome(
            attempt_id=attempt.id, result=result, error=error, actor=actor,
            may_cascade=index < len(plan) - 1, source="answer", recorded=recorded, answer_if_final=True,
        )
        # the PSP's health only (the circuit is one per connector for every merchant): a request it
        # refused as invalid (PspRequestRejectedError, a 4xx) says nothing about it; a PSP that does
        # not answer in time (PspTimeoutError: a read timeout, a 504) is the surest sign of all —
        # its own payment still never cascades (unknown), the next ones go elsewhere first
        if (verdict is V.UNAVAILABLE and isinstance(error, PspUnavailableError)) or (
                verdict is V.UNKNOWN and isinstance(error, PspTimeoutError)) or (
                verdict is V.SOFT_DECLINE and error is None and result is not None and result.decline is not None
                and result.decline.decline_class == DeclineClass.TECHNICAL):
            circuit_record_failure(connector)
        if not routing.should_cascade(verdict):
            break
    last = recorded[0] if recorded else None
    if last is not None and payment_rendered(last) is not None and not (
            last.capture_method == CaptureMethod.AUTOMATIC and last.status == PS.REQUIRES_CAPTURE):
        # the last recording transaction rendered the payment for its events after its last
        # transition: that is the answer (no re-read, no second render)
        return last
    payment = payment_get(merchant=merchant, payment_id=payment_id)  # as the API renders it
    if payment.capture_method == CaptureMethod.AUTOMATIC and payment.status == PS.REQUIRES_CAPTURE:
        payment_auto_capture_if_needed(payment_id=payment_id)
        payment = payment_get(merchant=merchant, payment_id=payment_id)
    return payment


DETACHED_MESSAGE = "This payment method was detached from its customer."


def _method_detached(payment_method_id: str | None) -> bool:
    return PaymentMethod.objects.filter(pk=payment_method_id, detached_at__isnull=False).exists()


@transaction.atomic(durable=True)
def _confirm_refused_record(*, attempt_id: str, error: PayeraError, actor: str) -> None:
    """The confirmation's method can no longer be sent after its attempt was committed and before
    its PSP call (detached, or its SEPA mandate revoked, in between): no PSP was asked, so the
    attempt is `failed` (not left `started` for recovery to find "never arrived"), the payment
    `failed` with `last_error.code` = the error's code and `payment.failed`, and the confirm claim
    is released. The caller answers the error (400; stored for its key: work began)."""
    payment = payment_lock_of_attempt(attempt_id)
    attempt = _attempts_of_locked(payment, attempt_id)
    if attempt.status != AS.STARTED:  # pragma: no cover - the confirmation's own claim holds it
        return
    transition(attempt, "mark_failed", payment=payment, actor=actor, error=f"{error.code}: not sent to the PSP",
               at=now(), data={"error": error.code})
    attempt.save()
    if transition(payment, "mark_failed", payment=payment, actor=actor,
                  error={"code": error.code, "decline_code": None,
                         "message": f"{error.message} The payment was not sent to any payment service provider."}):
        emit(payment, "payment.failed")
    if payment.inflight == "confirm":
        inflight_release(payment)
    payment.save()


@transaction.atomic(durable=True)
def _confirm_begin(*, merchant: Merchant, payment_id: str, actor: str) -> tuple[list[str], PaymentAttempt]:
    payment = _locked(merchant, payment_id)
    if payment.status not in (PS.REQUIRES_CONFIRMATION, PS.REQUIRES_PAYMENT_METHOD):
        raise PaymentStateError(f"A payment in status {payment.status} cannot be confirmed.")
    plan = _confirm_plan(merchant, payment, payment.payment_method)
    inflight_claim(payment, "confirm")
    transition(payment, "mark_processing", payment=payment, actor=actor, data={"plan": plan})
    payment.save()
    return plan, _attempt_insert(payment, plan[0])


def _confirm_plan(merchant: Merchant, payment: Payment, pm: PaymentMethod | None, *,
                  rules: list[routing.RoutingRule] | None = None,
                  circuits: dict[tuple[str, ...], frozenset[str]] | None = None) -> list[str]:
    """The connectors a confirmation tries, in order (routing, then the off-session plan)."""
    if pm is None:
        raise InvalidRequestError("The payment has no payment method.", param="payment_method")
    if pm.detached_at is not None:  # its number is shredded: no confirmation of any kind can send it
        raise InvalidRequestError(DETACHED_MESSAGE, param="payment_method", code="payment_method_detached")
    method_mandate(pm)  # a revoked (inactive) SEPA mandate is never debited: 400 mandate_inactive
    plan = _route(merchant=merchant, payment_id=payment.id, amount=payment.amount, currency=payment.currency,
                  method_type=pm.type, brand=pm.card_brand or None, bin_=pm.card_bin, rules=rules,
                  circuits=circuits)
    if not plan:
        raise _unsupported()
    if payment.off_session:
        plan = method_off_session_plan(pm, plan)
        if not plan:
            raise PaymentMethodNotReusableError(
                "This payment method holds no credential for off-session charges: its first, customer-present "
                "payment did not succeed on any of the merchant's connectors.", param="payment_method")
    return plan


@transaction.atomic(durable=True)
def attempt_start(*, payment_id: str, connector: str) -> PaymentAttempt | None:
    """Record the cascade's next attempt (committed) before its PSP call: a crash after this leaves
    a `started` attempt that recovery resolves by asking the PSP. None (nothing to send) when the
    payment's confirmation has ended meanwhile: recovery found it abandoned between two attempts
    (`confirmation_abandoned_end`), so a late request never authorizes a failed payment."""
    payment = payment_lock(payment_id)
    if payment.status != PS.PROCESSING or payment.inflight != "confirm" or payment.review_reason:
        logger.warning("confirmation of %s ended (%s) before its attempt on %s: not sent", payment_id,
                       payment.status, connector)
        return None
    return _attempt_insert(payment, connector)


def confirmations_abandoned(*, older_than: dt.datetime, payment_id: str | None = None) -> list[str]:
    """Payments whose confirmation stopped between two attempts of its cascade (a crash, or an
    error, after an attempt's outcome was recorded and before the next attempt was committed):
    `processing` with a `confirm` claim older than `older_than` and no open attempt — nothing at
    any PSP can move them, so no inquiry ever would."""
    qs = Payment.objects.filter(status=PS.PROCESSING, inflight="confirm", inflight_at__lt=older_than,
                                 review_reason="")
    if payment_id is not None:
        qs = qs.filter(pk=payment_id)
    return list(qs.exclude(attempts__status__in=[AS.STARTED, AS.UNKNOWN, AS.PENDING, AS.REQUIRES_ACTION])
                .values_list("pk", flat=True)[:500])


@transaction.atomic(durable=True)
def confirmation_abandoned_end(*, payment_id: str) -> bool:
    """End a confirmation abandoned between two attempts (`confirmations_abandoned`), checked again
    under the payment's lock (`attempt_start` takes it too: either its attempt is committed and seen
    here as open, or it finds the payment failed and sends nothing). The payment fails with
    `processing_error` — no other connector is tried from here: the shopper's CVC is gone — and its
    claim is released. True when it ended it."""
    payment = payment_lock(payment_id)
    if payment.status != PS.PROCESSING or payment.inflight != "confirm" or payment.review_reason:
        return False
    if payment.attempts.filter(status__in=[AS.STARTED, AS.UNKNOWN, AS.PENDING, AS.REQUIRES_ACTION]).exists():
        return False
    actor = "system:recovery"
    if transition(payment, "mark_failed", payment=payment, actor=actor, error={
        "code": "processing_error", "decline_code": None, "message": "The payment could not be processed.",
    }):
        emit(payment, "payment.failed")
    inflight_release(payment)
    payment.save()
    logger.warning("confirmation of %s was abandoned between two attempts: failed", payment_id)
    return True


def _attempt_insert(payment: Payment, connector: str, *, sequence: int | None = None) -> PaymentAttempt:
    if sequence is None:  # a payment inserted in this transaction knows it has none yet
        sequence = (payment.attempts.aggregate(m=Max("sequence"))["m"] or 0) + 1
    attempt = PaymentAttempt(
        payment=payment, merchant_id=payment.merchant_id, sequence=sequence, connector=connector,
        amount=payment.amount, currency=payment.currency,
        capture=payment.capture_method == CaptureMethod.AUTOMATIC,
        next_inquiry_at=now() + dt.timedelta(seconds=setting("PAYMENTS_STARTED_GRACE_SECONDS", 60)),
    )
    attempt.save(force_insert=True)
    return attempt


def return_url_for(payment_id: str) -> str:
    base = str(setting("PAYERA_PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")
    return f"{base}/payments/return/{payment_id}"


@transaction.atomic(durable=True)
def attempt_record_outcome(*, attempt_id: str, result=None, error: PspError | None = None, actor: str,
                           may_cascade: bool = False, source: str = "answer",
                           recorded: list[Payment] | None = None, answer_if_final: bool = False) -> V:
    """Record what the PSP said about an authorization (answer, 3-D Secure return, webhook or
    inquiry) in one transaction. Idempotent: an attempt already resolved ignores it (logged).
    `recorded` gets the payment as this transaction left it (with the render of its events).
    `answer_if_final` (a confirmation's own call): if this outcome ends the confirmation with the
    payment as rendered here — what `_confirm_attempts` then answers — the request's idempotent
    answer is stored in this transaction too (`idempotency_answer_record`). Its audit entries are
    inserted together at its end (`audit_entries_batched`)."""
    with audit_entries_batched():
        return _attempt_record_outcome(attempt_id=attempt_id, result=result, error=error, actor=actor,
                                       may_cascade=may_cascade, source=source, recorded=recorded,
                                       answer_if_final=answer_if_final)


def _attempt_record_outcome(*, attempt_id: str, result, error: PspError | None, actor: str, may_cascade: bool,
                            source: str, recorded: list[Payment] | None, answer_if_final: bool) -> V:
    payment = payment_lock_of_attempt(attempt_id)
    if recorded is not None:
        recorded.append(payment)
    attempt = _attempts_of_locked(payment, attempt_id)
    status_before = attempt.status
    if error is not None:
        verdict = _apply_error(payment, attempt, error, actor=actor, may_cascade=may_cascade)
    else:
        with postings_last():
            verdict = apply_authorization(
                payment, attempt, outcome=result.outcome, state=result.state,
                psp_reference=result.payment.psp_reference or "", amount=result.amount, currency=result.currency,
                amount_captured=result.amount_captured, decline=result.decline,
                action_url=result.action.redirect_url if result.action else "", actor=actor,
                may_cascade=may_cascade, source=source,
                network_transaction_id=result.network_transaction_id,
                payment_method_token=result.payment_method_token,
            )
    if answer_if_final:
        # the confirmation's own call has an outcome: a retry after a crash answers the payment
        # (a second confirmation would be refused: it is no longer awaiting one)
        idempotency_resource_record(resource=payment.id)
        if _answers_confirmation(payment, verdict, may_cascade=may_cascade):
            idempotency_answer_record(payment)
    if attempt.status != status_before:  # counted once, when the outcome moved the attempt
        transaction.on_commit(lambda: _count_outcome(attempt.connector, status_before, attempt.status, result, error))
    return verdict


def _answers_confirmation(payment: Payment, verdict: V, *, may_cascade: bool) -> bool:
    """Whether `_confirm_attempts` answers this outcome's render: no next attempt follows it, and
    no automatic capture after it (the conditions of its loop and of its answer)."""
    if may_cascade and routing.should_cascade(verdict):
        return False
    return payment_rendered(payment) is not None and not (
        payment.capture_method == CaptureMethod.AUTOMATIC and payment.status == PS.REQUIRES_CAPTURE)


def _attempts_of_locked(payment: Payment, attempt_id: str) -> PaymentAttempt:
    """The attempt `attempt_id` of the locked `payment`, read with its siblings in one statement
    (after the lock: the current rows). They become the payment's `attempts` for this transaction's
    render (`payment.attempts.all()`), which no longer reads them again; no attempt is inserted in
    a recording transaction, and the render sees the instances the transaction moves."""
    rows = precompiled_select(PaymentAttempt, _attempts_of, payment.pk)  # compiled once
    for attempt in rows:
        if attempt.pk == attempt_id:
            break
    else:  # pragma: no cover - the lock found the payment through this attempt
        raise PaymentAttempt.DoesNotExist(f"no attempt {attempt_id}")
    # an evaluated queryset, as a prefetch leaves it (`.filter()` on it still asks). Its filter is
    # deferred as Django's related managers defer theirs: built only if the queryset is used beyond
    # its rows (another filter, `.query`), not on every payment for a render that only iterates.
    attempts = PaymentAttempt.objects.all()
    attempts._defer_next_filter = True
    attempts = attempts.filter(payment_id=payment.pk)
    attempts._result_cache, attempts._prefetch_done = rows, True
    cache = getattr(payment, "_prefetched_objects_cache", None)
    if cache is None:
        cache = payment._prefetched_objects_cache = {}
    cache["attempts"] = attempts
    return attempt


def _count_outcome(connector: str, before: str, after: str, result, error: PspError | None) -> None:
    """Prometheus counters of authorization outcomes (payera.core.metrics), after commit only."""
    if error is not None:
        metrics.PSP_ERRORS.labels(connector=connector, kind=error.code).inc()
        if after == AS.UNKNOWN:
            metrics.UNKNOWN_OUTCOMES.labels(connector=connector).inc()
            metrics.AUTHORIZATIONS.labels(connector=connector, result="unknown", decline_code="").inc()
        else:
            metrics.AUTHORIZATIONS.labels(connector=connector, result="error", decline_code="").inc()
        return
    outcome = str(result.outcome.value).lower()
    decline_code = str(result.decline.code.value) if result.decline is not None else ""
    metrics.AUTHORIZATIONS.labels(connector=connector, result=outcome, decline_code=decline_code).inc()
    if before == AS.UNKNOWN:
        metrics.UNKNOWN_OUTCOMES_RESOLVED.labels(connector=connector, result=outcome).inc()


def _apply_error(payment: Payment, attempt: PaymentAttempt, error: PspError, *, actor: str, may_cascade: bool) -> V:
    if attempt.status != AS.STARTED:
        logger.info("late transport error for %s (%s) ignored", attempt.id, attempt.status)
        return V.UNKNOWN
    at = now()
    if not error.may_have_processed:
        transition(attempt, "mark_failed", payment=payment, actor=actor, error=f"{error.code}: {error.message}",
                   at=at, data={"error": error.code})
        attempt.save()
        if not may_cascade:
            transition(payment, "mark_failed", payment=payment, actor=actor, error={
                "code": "processing_error", "decline_code": None,
                "message": "No payment service provider could process the payment.",
            })
            inflight_release(payment)
            payment.save()
            emit(payment, "payment.failed")
        return V.UNAVAILABLE
    transition(attempt, "mark_unknown", payment=payment, actor=actor, error=f"{error.code}: {error.message}",
               next_inquiry_at=at + recovery_delay(0), data={"error": error.code})
    attempt.save()
    inflight_release(payment)  # the payment stays `processing` until recovery asks the PSP
    payment.save()
    return V.UNKNOWN


def apply_authorization(
    payment: Payment, attempt: PaymentAttempt, *, outcome: Outcome, state: PspState | None, psp_reference: str,
    amount: int | None, currency: str | None, amount_captured: int, decline: Decline | None, action_url: str,
    actor: str, may_cascade: bool = False, source: str = "", network_transaction_id: str | None = None,
    payment_method_token: str | None = None,
) -> V:
    """The one place an authorization outcome moves the attempt and the payment (the caller holds
    the payment lock in an atomic block). Order-proof: never moves a state machine backwards."""
    at = now()
    data = {"source": source}
    if outcome == Outcome.REQUIRES_ACTION and payment.off_session:
        # No shopper to authenticate: an off-session challenge fails the charge (the merchant
        # brings the customer back on session).
        outcome, state = Outcome.DECLINED, PspState.DECLINED
        decline = Decline(code=PortDeclineCode.AUTHENTICATION_REQUIRED, decline_class=DeclineClass.HARD,
                          message="The card requires authentication; it cannot be charged off session.")
    if attempt.status not in (AS.STARTED, AS.UNKNOWN, AS.PENDING, AS.REQUIRES_ACTION):
        if outcome == Outcome.APPROVED and attempt.status == AS.AUTHORIZED and (
                state == PspState.CAPTURED or amount_captured):
            # captured at the PSP after we saw it authorized, by no capture of ours
            return _psp_capture_record(payment, attempt, amount_captured=amount_captured, currency=currency,
                                       psp_reference=psp_reference, actor=actor, at=at, source=source)
        logger.info("stale %s outcome %s for %s in %s ignored", source, outcome, attempt.id, attempt.status)
        return V.SUCCEEDED if attempt.status in (AS.AUTHORIZED, AS.CAPTURED) else V.HARD_DECLINE
    if state == PspState.VOIDED:
        # The PSP voided it before it was authorized here (a cancel whose answer was lost): the
        # attempt is voided, never authorized; the payment is canceled where it still can be.
        transition(attempt, "mark_voided", payment=payment, actor=actor, data=data)
        attempt.save()
        if transition(payment, "mark_canceled", payment=payment, actor=actor):
            emit(payment, "payment.canceled")
        elif transition(payment, "mark_failed", payment=payment, actor=actor, error={
            "code": "payment_canceled", "decline_code": None, "message": "The authorization was voided.",
        }):
            emit(payment, "payment.failed")
        if payment.inflight in ("confirm", "cancel"):
            inflight_release(payment)
        payment.save()
        return V.HARD_DECLINE
    if outcome == Outcome.PENDING:
        if attempt.status in (AS.STARTED, AS.UNKNOWN):
            transition(attempt, "mark_pending", payment=payment, actor=actor, psp_reference=psp_reference,
                       next_inquiry_at=at + dt.timedelta(seconds=setting("PAYMENTS_PENDING_INQUIRY_SECONDS", 60)),
                       data=data)
            attempt.save()
        if payment.inflight == "confirm":
            inflight_release(payment)
            payment.save()
        return V.PENDING
    if outcome == Outcome.REQUIRES_ACTION:
        if attempt.status != AS.REQUIRES_ACTION:
            transition(attempt, "mark_requires_action", payment=payment, actor=actor, psp_reference=psp_reference,
                       action_url=action_url,
                       next_inquiry_at=at + dt.timedelta(seconds=setting("PAYMENTS_ACTION_INQUIRY_SECONDS", 900)),
                       data=data)
            attempt.save()
        if payment.status == PS.PROCESSING:
            transition(payment, "mark_requires_action", payment=payment, actor=actor, redirect_url=action_url)
            emit(payment, "payment.requires_action")
        if payment.inflight == "confirm":
            inflight_release(payment)
        payment.save()
        return V.REQUIRES_ACTION
    if outcome == Outcome.APPROVED:
        if (amount is not None and amount != attempt.amount) or (currency and currency != attempt.currency):
            transition(attempt, "mark_conflicted", payment=payment, actor=actor, psp_reference=psp_reference,
                       amount=amount, currency=currency or "", at=at,
                       data={**data, "psp_amount": amount, "psp_currency": currency})
            attempt.save()
            reason = (f"amount_mismatch: requested {attempt.amount} {attempt.currency}, "
                      f"{attempt.connector} reported {amount} {currency}")
            if payment.status in (PS.PROCESSING, PS.REQUIRES_ACTION):
                transition(payment, "mark_in_review", payment=payment, actor=actor, reason=reason)
            inflight_release(payment)
            payment.save()
            logger.warning("payment %s held for review: %s", payment.id, reason)
            return V.UNKNOWN
        _credential_keep(payment, attempt, network_transaction_id=network_transaction_id,
                         token=payment_method_token)
        captured = amount_captured if (state == PspState.CAPTURED or amount_captured) else 0
        if captured:
            transition(attempt, "mark_captured", payment=payment, actor=actor, psp_reference=psp_reference,
                       amount=amount, currency=currency, at=at, data=data)
            attempt.save()
            capture = Capture(payment=payment, attempt=attempt, amount=captured, currency=payment.currency,
                              fee=_fee(payment, captured))
            # born succeeded (one INSERT); its PaymentEvent still says pending -> succeeded
            transition(capture, "mark_succeeded", payment=payment, actor=actor, psp_reference=attempt.id)
            capture.save(force_insert=True)
            _capture_succeeded(payment, attempt, capture, actor=actor, at=at)
        else:
            transition(attempt, "mark_authorized", payment=payment, actor=actor, psp_reference=psp_reference,
                       amount=amount, currency=currency, at=at, data=data)
            attempt.save()
            if payment.status in (PS.PROCESSING, PS.REQUIRES_ACTION):
                transition(payment, "mark_authorized", payment=payment, actor=actor, at=at)
                if payment.capture_method == CaptureMethod.MANUAL:
                    emit(payment, "payment.requires_capture")
        if payment.inflight == "confirm":
            inflight_release(payment)
        payment.save()
        return V.SUCCEEDED
    # DECLINED / SOFT_DECLINED
    decline = decline_normalize(attempt.connector, decline)
    transition(attempt, "mark_declined", payment=payment, actor=actor, psp_reference=psp_reference,
               code=decline.code.value, decline_class=decline.decline_class.value, psp_code=decline.psp_code,
               message=decline.message, at=at, data={**data, "decline_code": decline.code.value})
    attempt.save()
    if payment.payment_method_id:  # a SEPA debit rejected with a code that ends the mandate (AC04, MD01, …)
        mandate_end_by_code(pm=payment.payment_method, code=decline.psp_code,
                            what=f"debit of {payment.id} refused ({attempt.id})")
    auth_required = decline.code == PortDeclineCode.AUTHENTICATION_REQUIRED and payment.off_session
    if decline.may_cascade and may_cascade and payment.status == PS.PROCESSING and not auth_required:
        return V.SOFT_DECLINE
    if payment.status in (PS.PROCESSING, PS.REQUIRES_ACTION):
        transition(payment, "mark_failed", payment=payment, actor=actor, error=last_error_of(
            decline, payment.payment_method.type if payment.payment_method_id else "card"))
        emit(payment, "payment.failed")
        if auth_required:  # another connector would ask the same: the customer must come back
            emit(payment, "payment.authentication_required")
    if payment.inflight == "confirm":
        inflight_release(payment)
    payment.save()
    return V.HARD_DECLINE


def _psp_capture_record(payment: Payment, attempt: PaymentAttempt, *, amount_captured: int, currency: str | None,
                        psp_reference: str, actor: str, at: dt.datetime, source: str) -> V:
    """The PSP reports an authorization Payera holds `authorized` as captured, and no capture of
    ours is under way: the PSP captured on its own (delayed automatic capture, its dashboard). It
    is recorded as a capture of the authorization — born succeeded, posted, `payment.captured` —
    while the payment still awaits capture; it moves the attempt to `captured`, so any repeat
    (webhook, inquiry, settlement) is stale news. A capture of ours still pending is left to its
    own outcome (the PSP's answer, webhook or inquiry names it); anything else is for operations."""
    if Capture.objects.filter(attempt=attempt, status=OperationStatus.PENDING).exists():
        logger.info("%s reported captured by %s while a capture of ours is under way: its outcome decides",
                    attempt.id, source)
        return V.PENDING
    if payment.status != PS.REQUIRES_CAPTURE or not 0 < amount_captured <= attempt.amount or (
            currency and currency != attempt.currency):
        logger.error("%s of %s is reported captured (%s %s) by %s, but the payment is %s: operations must look",
                     attempt.id, payment.id, amount_captured, currency, source, payment.status)
        return V.SUCCEEDED
    capture = Capture(payment=payment, attempt=attempt, amount=amount_captured, currency=payment.currency,
                      fee=_fee(payment, amount_captured))
    # born succeeded (one INSERT); its PaymentEvent still says pending -> succeeded
    transition(capture, "mark_succeeded", payment=payment, actor=actor, psp_reference=psp_reference)
    capture.save(force_insert=True)
    logger.warning("%s of %s captured by %s on its own (%s %s, reported by %s): recorded as %s", attempt.id,
                   payment.id, attempt.connector, amount_captured, payment.currency, source, capture.id)
    _capture_succeeded(payment, attempt, capture, actor=actor, at=at)
    if payment.inflight == "confirm":
        inflight_release(payment)
    payment.save()
    return V.SUCCEEDED


def _credential_keep(payment: Payment, attempt: PaymentAttempt, *, network_transaction_id: str | None,
                     token: str | None) -> None:
    """A customer-present payment that saves its method: keep, per connector, the PSP's token
    and the scheme's network transaction id for later merchant-initiated charges (first wins:
    MITs reference the first CIT)."""
    pm = payment.payment_method
    if payment.setup_future_usage != "off_session" or pm is None or pm.customer_id is None:
        return
    if not (network_transaction_id or token):
        return
    cred, created = PaymentMethodCredential.objects.get_or_create(
        payment_method=pm, connector=attempt.connector,
        defaults={"psp_token": (token or "")[:128], "network_transaction_id": (network_transaction_id or "")[:64],
                  "attempt": attempt.id},
    )
    if not created and (not cred.psp_token or not cred.network_transaction_id):
        cred.psp_token = cred.psp_token or (token or "")[:128]
        cred.network_transaction_id = cred.network_transaction_id or (network_transaction_id or "")[:64]
        cred.save(update_fields=["psp_token", "network_transaction_id", "updated_at"])


def _capture_succeeded(payment: Payment, attempt: PaymentAttempt, capture: Capture, *, actor: str, at) -> None:
    """A capture the PSP confirmed: attempt and payment move, the ledger posts, events go out."""
    if attempt.status != AS.CAPTURED:
        transition(attempt, "mark_captured", payment=payment, actor=actor, psp_reference="", amount=None,
                   currency=None, at=at)
        attempt.save()
    transition(payment, "mark_captured", payment=payment, actor=actor, amount=capture.amount, at=at)
    post(
        capture_journals(attempt_id=attempt.id, merchant_id=payment.merchant_id, connector=attempt.connector,
                         gross=capture.amount, fee=capture.fee, currency=capture.currency,
                         escrow=payment_in_escrow(payment)),
        occurred_at=at, metadata={"payment": payment.id, "capture": capture.id},
    )
    emit(payment, "payment.captured", "payment.succeeded")
    if payment.inflight == "cancel":
        # a cancel under way (its void pending at the PSP, its answer lost, its request crashed)
        # can no longer void a captured authorization: it failed. Its claim ends with the capture
        # (a refund is not 409 until recovery's cancel step) and the merchant, who asked to cancel,
        # is told; the void's own late outcome (refused) finds the attempt captured: stale news.
        logger.warning("%s of %s captured while a cancel was under way: the cancel failed", attempt.id, payment.id)
        inflight_release(payment)
        emit(payment, "payment.cancel_failed")


def payment_auto_capture_if_needed(*, payment_id: str) -> None:
    """An automatic-capture payment whose PSP only authorized (e.g. resolved by inquiry): capture it."""
    payment = Payment.objects.filter(pk=payment_id).select_related("merchant").first()
    if payment and payment.capture_method == CaptureMethod.AUTOMATIC and payment.status == PS.REQUIRES_CAPTURE:
        try:
            payment_capture(merchant=payment.merchant, payment_id=payment_id, actor="system:auto_capture")
        except PayeraError:
            logger.warning("automatic capture of %s failed; it stays requires_capture", payment_id, exc_info=True)


# --- capture ----------------------------------------------------------------------------
def payment_capture(*, merchant: Merchant, payment_id: str, amount_to_capture: int | None = None,
                    actor: str = "api", for_booking: bool = False) -> Payment:
    """Capture all or part of the authorization; the rest is released. A booking's payment is
    captured only by its booking (`for_booking`), into escrow."""
    _owned(merchant, payment_id)
    capture = _capture_begin(merchant=merchant, payment_id=payment_id, amount=amount_to_capture, actor=actor,
                             for_booking=for_booking)
    attempt = capture.attempt
    result, error = None, None
    try:
        with outside_transaction():
            result = get_adapter(attempt.connector).capture(CaptureRequest(
                payment=PspReference(attempt.id, attempt.psp_reference or None), reference=capture.id,
                amount=capture.amount, currency=capture.currency, final=True,
            ))
    except PspError as exc:
        error = exc
    # a failure in this answer is the request's own answer (raised below): no event
    capture_record_outcome(capture_id=capture.id, outcome=result.outcome if result else None,
                           psp_reference=(result.psp_reference or "") if result else "",
                           decline=result.decline if result else None, error=error, actor=actor, release=True,
                           notify=False)
    if error is not None and not error.may_have_processed:
        raise error
    if result is not None and result.outcome == Outcome.DECLINED:
        raise PspOperationFailedError("The payment service provider refused the capture.", code="capture_failed")
    return Payment.objects.get(pk=payment_id)


@transaction.atomic(durable=True)
def _capture_begin(*, merchant: Merchant, payment_id: str, amount: int | None, actor: str,
                   for_booking: bool = False) -> Capture:
    payment = _locked(merchant, payment_id)
    if not for_booking:
        booking_guard(payment, "capture")
    if payment.status != PS.REQUIRES_CAPTURE:
        raise PaymentNotCapturableError()
    if amount is None:
        amount = payment.amount_capturable
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequestError("amount_to_capture must be a positive integer.", param="amount_to_capture")
    if amount > payment.amount_capturable:
        raise InvalidRequestError(
            f"amount_to_capture ({amount}) exceeds the amount capturable ({payment.amount_capturable}).",
            param="amount_to_capture", code="amount_too_large",
        )
    attempt = payment.attempts.filter(status=AS.AUTHORIZED).order_by("-sequence").first()
    if attempt is None:
        raise PaymentNotCapturableError()
    if Capture.objects.filter(attempt=attempt).exclude(status=OperationStatus.FAILED).exists():
        # an asynchronous PSP (beta) has not confirmed the first capture yet: the payment still
        # shows requires_capture, so say why this one is refused
        raise PaymentNotCapturableError("A capture of this payment is under way; its outcome arrives as "
                                        "payment.captured (or the payment stays requires_capture if it fails).")
    if payment.inflight == "cancel":
        # a cancel under way (its void pending at the PSP or its answer lost) is never taken over by
        # time, however long the PSP takes: its webhook or recovery's inquiry (cancel_recover) ends it
        raise PaymentInProgressError()
    inflight_claim(payment, "capture")
    payment.save()
    capture = Capture(payment=payment, attempt=attempt, amount=amount, currency=payment.currency,
                      fee=_fee(payment, amount),
                      next_inquiry_at=now() + dt.timedelta(seconds=setting("PAYMENTS_PENDING_INQUIRY_SECONDS", 60)))
    capture.save(force_insert=True)
    return capture


@transaction.atomic(durable=True)
def capture_record_outcome(*, capture_id: str, outcome: Outcome | None, psp_reference: str = "",
                           decline: Decline | None = None, error: PspError | None = None, actor: str,
                           release: bool = False, notify: bool = True) -> None:
    """Record a capture's outcome (answer, webhook or inquiry). Idempotent. A capture failing
    after its request answered (`notify`: a webhook, an inquiry) sends `payment.capture_failed`:
    the merchant was told it is under way and waits for `payment.captured`."""
    found = operation_for_outcome(Capture, capture_id, inflight="capture", release=release,
                                  failed_too=error is None and outcome == Outcome.APPROVED)
    if found is None:
        return
    payment, capture = found
    if release and _operation_may_have_happened(outcome, error):
        # the request's own capture went through, or may have: a retry after a crash answers the
        # payment (a second capture would be refused) instead of capturing again
        idempotency_resource_record(resource=payment.id)
    if capture.status == OperationStatus.FAILED and not _capture_found_allowed(payment, capture):
        return
    if error is not None:
        if not error.may_have_processed:
            transition(capture, "mark_failed", payment=payment, actor=actor, code=error.code)
            capture.save()
            if notify:
                emit(payment, "payment.capture_failed")
        return  # unknown: stays pending; recovery asks the PSP
    if outcome == Outcome.APPROVED:
        verb = "mark_found" if capture.status == OperationStatus.FAILED else "mark_succeeded"
        with postings_last():
            transition(capture, verb, payment=payment, actor=actor, psp_reference=psp_reference)
            capture.save()
            _capture_succeeded(payment, capture.attempt, capture, actor=actor, at=now())
            payment.save()
    elif outcome == Outcome.DECLINED:
        code = decline.code.value if decline else "operation_rejected"
        transition(capture, "mark_failed", payment=payment, actor=actor, code=code)
        capture.save()
        if notify:
            emit(payment, "payment.capture_failed")


def _capture_found_allowed(payment: Payment, capture: Capture) -> bool:
    """A failed capture the PSP reports done: it happened (the PSP holds the money) if recovery
    failed it only because the PSP did not know it yet (`NOT_AT_PSP`: its request was still on its
    way, the PSP's inquiry lagged), and the payment still awaits capture with no other capture of
    the authorization live; anything else is stale news or for operations (logged)."""
    if capture.failure_code != NOT_AT_PSP:
        logger.info("stale capture outcome for %s (failed %s) ignored", capture.id, capture.failure_code)
        return False
    if payment.status != PS.REQUIRES_CAPTURE or capture.attempt.status != AS.AUTHORIZED or Capture.objects.filter(
            attempt_id=capture.attempt_id).exclude(status=OperationStatus.FAILED).exists():
        logger.error("capture %s of %s was failed as unknown at the PSP, which now reports it done, but the payment "
                     "is %s: operations must look", capture.id, payment.id, payment.status)
        return False
    logger.warning("capture %s of %s, failed as unknown at the PSP, is reported done by it: recorded", capture.id,
                   payment.id)
    return True


def _operation_may_have_happened(outcome: Outcome | None, error: PspError | None) -> bool:
    """Whether a capture or void the PSP answered went through or may have (not refused, not
    declined): then the key of the request that sent it is bound to its payment."""
    if error is not None:
        return error.may_have_processed
    return outcome in (Outcome.APPROVED, Outcome.PENDING)


# --- cancel -----------------------------------------------------------------------------
def payment_cancel(*, merchant: Merchant, payment_id: str, actor: str = "api", for_booking: bool = False) -> Payment:
    """Cancel before capture: a payment never sent to a PSP is canceled at once; an
    authorization, or an attempt waiting for the shopper (3-D Secure, bank page), is voided at the
    PSP first — so the shopper can no longer complete it there. A booking's payment is canceled
    only by its booking."""
    _owned(merchant, payment_id)
    attempt = _cancel_begin(merchant=merchant, payment_id=payment_id, actor=actor, for_booking=for_booking)
    if attempt is None:
        return Payment.objects.get(pk=payment_id)
    result, error = None, None
    try:
        with outside_transaction():
            result = get_adapter(attempt.connector).void(VoidRequest(
                payment=PspReference(attempt.id, attempt.psp_reference or None),
                reference=void_reference(attempt.id, attempt.void_number),
            ))
    except PspError as exc:
        error = exc
    # the PSP refused the void of an authorization: it may have captured it on its own (its webhook
    # lost), which would refuse every void. The claim is kept while the PSP is asked why, below
    refused = attempt.status == AS.AUTHORIZED and (
        (error is not None and not error.may_have_processed) or (error is None and result.outcome == Outcome.DECLINED))
    _cancel_record(payment_id=payment_id, attempt_id=attempt.id, outcome=result.outcome if result else None,
                   error=error, actor=actor, void_number=attempt.void_number, keep_claim=refused)
    if refused:
        _void_refused_inquire(payment_id=payment_id, attempt_id=attempt.id)
    if error is not None:
        # recovery imports this module
        from payments.services.recovery import _cancel_claim_release, attempt_recover, cancel_recover

        if attempt.status == AS.REQUIRES_ACTION:  # e.g. the shopper completed it a moment ago
            attempt_recover(attempt_id=attempt.id)  # ask the PSP and record it, as redirect expiry does
            status = Payment.objects.values_list("status", flat=True).get(pk=payment_id)
            if status != PS.REQUIRES_ACTION:  # the PSP's state is recorded: no cancel left to recover
                _cancel_claim_release(payment_id=payment_id)
                if status == PS.CANCELED:  # the void went through; only its answer was lost
                    return Payment.objects.get(pk=payment_id)
                raise PaymentNotCancelableError("The shopper completed the payment before it could be canceled.")
        elif error.may_have_processed:
            # the void may have been done (a timeout): ask now; a voided authorization is the cancel
            # the merchant asked for. Otherwise the claim stays and recovery asks again after the
            # grace period (the void may still arrive): never decided by time alone.
            cancel_recover(payment_id=payment_id, release=False)
            canceled = Payment.objects.filter(pk=payment_id, status=PS.CANCELED).first()
            if canceled is not None:
                return canceled
        raise error
    if result is not None and result.outcome == Outcome.DECLINED:
        raise PspOperationFailedError("The payment service provider refused the cancellation.", code="cancel_failed")
    return Payment.objects.get(pk=payment_id)


def _void_refused_inquire(*, payment_id: str, attempt_id: str) -> None:
    """The PSP refused the void of an authorization (declined in its answer, or an error saying it
    did not take it; never Payera's own refusals, made before any PSP call), the `cancel` claim
    still held: ask the PSP (outside any transaction) and record a capture it made on its own
    (`attempt_settlement_inquire`). Recorded under the claim, that capture ends the cancel —
    `payment.cancel_failed` once, whichever of this inquiry, a webhook or recovery records it
    (`_capture_succeeded`) — and confirms a booking whose expiry was voiding it. Else (still
    authorized, or the PSP cannot be asked) the claim is released: the merchant may capture, or
    cancel again under a new void reference. The merchant's cancel, the authorization expiry and
    the booking expiry all come here (tests/payments/test_void_refused_psp_capture.py)."""
    from payments.services.recovery import _cancel_claim_release, attempt_settlement_inquire  # imports this module

    try:
        attempt_settlement_inquire(attempt_id=attempt_id)
    finally:
        _cancel_claim_release(payment_id=payment_id)


def void_reference(attempt_id: str, number: int = 1) -> str:
    """The reference of void `number` of an attempt (PaymentAttempt.void_number): `vd_<attempt>`
    for the first (as every void was before voids were numbered), `vd_<attempt>_<n>` after it."""
    body = attempt_id.removeprefix("att_")
    return f"vd_{body}" if number <= 1 else f"vd_{body}_{number}"


def void_number_of(attempt_id: str, reference: str | None) -> int | None:
    """Which void of the attempt `reference` is (the inverse of `void_reference`), or None."""
    first = void_reference(attempt_id)
    if reference == first:
        return 1
    rest = (reference or "").removeprefix(first + "_")
    if rest != reference and rest.isascii() and rest.isdigit() and int(rest) >= 2 and rest[0] != "0":
        return int(rest)
    return None


def void_refused(attempt: PaymentAttempt, number: int) -> None:
    """The PSP refused void `number` of the attempt (caller holds the payment's lock): the next void
    goes under a new reference — the PSP would answer this one's refusal again. Once per void,
    whatever repeats the news (the answer, a webhook, an inquiry); a void whose outcome is unknown
    never comes here (its retry must reuse the reference)."""
    if attempt.void_number == number:
        attempt.void_number = number + 1
        attempt.save(update_fields=["void_number", "updated_at"])


@transaction.atomic(durable=True)
def void_refused_record(*, attempt_id: str, number: int) -> None:
    """`void_refused` in its own transaction (a void outside a cancel: the redirect expiry)."""
    payment_lock_of_attempt(attempt_id)
    void_refused(PaymentAttempt.objects.get(pk=attempt_id), number)


@transaction.atomic(durable=True)
def _cancel_begin(*, merchant: Merchant, payment_id: str, actor: str,
                  for_booking: bool = False) -> PaymentAttempt | None:
    payment = _locked(merchant, payment_id)
    if not for_booking:
        booking_guard(payment, "cancel")
    waiting = payment.status == PS.REQUIRES_ACTION and payment.attempts.filter(status=AS.REQUIRES_ACTION).exists()
    if payment.status in (PS.REQUIRES_PAYMENT_METHOD, PS.REQUIRES_CONFIRMATION, PS.REQUIRES_ACTION) and not waiting:
        transition(payment, "mark_canceled", payment=payment, actor=actor)
        payment.save()
        emit(payment, "payment.canceled")
        idempotency_resource_record(resource=payment.id)  # done: a retry after a crash answers this payment
        return None
    if payment.status not in (PS.REQUIRES_CAPTURE, PS.REQUIRES_ACTION):
        raise PaymentNotCancelableError()
    if payment.captures.filter(status=OperationStatus.PENDING).exists():
        # an asynchronous PSP is capturing it (e.g. the automatic capture after beta authorized):
        # the PSP would refuse the void; the capture's outcome decides, then refund if need be
        raise PaymentNotCancelableError("A capture of this payment is under way: it can no longer be canceled.")
    status = AS.REQUIRES_ACTION if waiting else AS.AUTHORIZED
    attempt = payment.attempts.filter(status=status).order_by("-sequence").first()
    if attempt is None:
        raise PaymentNotCancelableError()
    inflight_claim(payment, "cancel")
    payment.save()
    return attempt


@transaction.atomic(durable=True)
def _cancel_record(*, payment_id: str, attempt_id: str, outcome: Outcome | None, error: PspError | None,
                   actor: str, void_number: int | None = None, refused_later: bool = False,
                   keep_claim: bool = False) -> None:
    """A void's outcome. APPROVED: voided, the payment `canceled`. PENDING (an asynchronous PSP
    took it, its outcome comes later) or a timeout: the `cancel` claim stays — a cancel under way,
    resolved by the void's webhook or recovery's inquiry (`cancel_recover`), the payment still
    `requires_capture` meanwhile. `refused_later`: the PSP refused a void it had taken (or whose
    answer was lost): the claim is released and the merchant, told the cancel was under way, gets
    `payment.cancel_failed` (the payment, still authorized: capture it or cancel again).
    `void_number`: which void of the attempt the outcome is about (default: its current one). A
    refusal (declined, refused later, or an error that says the PSP did not take it) moves the
    attempt to its next void number, so that cancelling again sends a new reference
    (`void_refused`); an unknown outcome keeps it (the retry reuses the reference). `keep_claim`:
    a refusal keeps the claim while `payment_cancel` asks the PSP why (`_void_refused_inquire`)."""
    payment = payment_lock(payment_id)
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    voided = error is None and outcome == Outcome.APPROVED
    if void_number is not None and void_number < attempt.void_number and not voided:
        # news of an earlier void, already refused and recorded (the attempt moved on to a later
        # void): e.g. a second inquiry that read the number before the first recorded it. The
        # claim, if any, is a later cancel's, whose void is still to be answered: left alone, and
        # the merchant was told about this refusal once already
        logger.info("stale outcome of void %s of %s (now void %s) ignored", void_number, attempt.id,
                    attempt.void_number)
        return
    if _operation_may_have_happened(outcome, error):  # a retry after a crash answers the payment
        idempotency_resource_record(resource=payment.id)
    under_way = (error is not None and error.may_have_processed) or (error is None and outcome == Outcome.PENDING)
    if refused_later or (error is None and outcome == Outcome.DECLINED) or (
            error is not None and not error.may_have_processed):
        void_refused(attempt, attempt.void_number if void_number is None else void_number)
    claimed = payment.inflight == "cancel"
    # a void that may have been done (a timeout) or is pending keeps the claim: it marks a cancel
    # whose outcome recovery must ask the PSP about (cancel_recover), as a crashed request's claim does
    if claimed and not under_way and not keep_claim:
        inflight_release(payment)
    if refused_later and claimed and payment.status in (PS.REQUIRES_CAPTURE, PS.REQUIRES_ACTION):
        logger.warning("the void of %s (%s) was refused by %s after it took it: the payment stays %s", payment.id,
                       attempt.id, attempt.connector, payment.status)
        emit(payment, "payment.cancel_failed")
    if error is None and outcome == Outcome.APPROVED and payment.status in (
        PS.REQUIRES_CAPTURE, PS.REQUIRES_ACTION,
    ) and attempt.status in (AS.AUTHORIZED, AS.REQUIRES_ACTION):
        transition(attempt, "mark_voided", payment=payment, actor=actor)
        attempt.save()
        transition(payment, "mark_canceled", payment=payment, actor=actor)
        emit(payment, "payment.canceled")
    payment.save()


# --- authorization expiry ----------------------------------------------------------------
def payment_expire_authorizations(*, now_: dt.datetime | None = None) -> list[str]:
    """Void authorizations older than PAYMENTS_AUTHORIZATION_TTL_DAYS (7): the card networks drop
    them anyway; voiding releases the shopper's funds and closes the payment as `canceled`.
    Bookings' payments are left to the booking expiry (their own `hold_expires_at`)."""
    cutoff = (now_ or now()) - dt.timedelta(days=setting("PAYMENTS_AUTHORIZATION_TTL_DAYS", 7))
    done = []
    for payment in Payment.objects.filter(status=PS.REQUIRES_CAPTURE, authorized_at__lt=cutoff,
                                          booking__isnull=True).select_related(
        "merchant"
    )[:500]:
        try:
            payment_cancel(merchant=payment.merchant, payment_id=payment.id, actor="system:authorization_expiry")
            done.append(payment.id)
        except (PayeraError, PspUnavailableError):
            if Payment.objects.filter(pk=payment.id, status=PS.SUCCEEDED).exists():  # _void_refused_inquire
                logger.warning("the void expiring %s was refused: the PSP had captured it (recorded)", payment.id)
                continue
            logger.warning("could not expire the authorization of %s; next run retries", payment.id, exc_info=True)
    return done
