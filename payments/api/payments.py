"""Payments, refunds and balance API (CONTRACT "Payments"): one APIView per operation; input
serializers check shape only, the services check the rules."""

from __future__ import annotations

import functools

from django.core.validators import URLValidator
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from ledger.errors import BalanceTransactionCursorError
from ledger.selectors import balance_get, balance_transaction_list, balance_transaction_page
from payera.audit.middleware import client_ip
from payera.core.db import created_timestamp
from payera.core.errors import InvalidRequestError
from payera.core.fields import StrictIntegerField
from payera.core.horizon import committed_before
from payera.core.ids import opaque_id, opaque_id_key
from payera.core.pagination import paginate, parse_limit
from payera.idempotency.services import idempotency_answer_prepare
from payera.merchants.api.base import MerchantApiView
from payments.selectors import (
    BalanceTransactionNotFoundError,
    balance_transaction_public_text,
    payment_get,
    payment_list,
    refund_get,
    refund_list,
)
from payments.serializers import (
    PaymentOutputSerializer,
    RefundOutputSerializer,
    payment_answer,
    render_payment,
    render_refund,
)
from payments.services import payment_cancel, payment_capture, payment_confirm, payment_create, refund_create

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 10."),
    OpenApiParameter("starting_after", str, description="An object id from the previous page: the next page."),
]


# Where the shopper is sent back after 3-D Secure or the bank's page (`payment_return`): a web page.
# DRF's URLField alone also takes ftp(s), which the redirect then refuses (a bare 400 for the shopper).
RETURN_URL_SCHEMES = URLValidator(schemes=["http", "https"], message="return_url must be an http or https URL.")


def _actor(request) -> str:
    return f"api_key:{request.api_key.id}"


def _list(name: str, item) -> serializers.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "object": serializers.CharField(default="list"),
            "data": item(many=True),
            "has_more": serializers.BooleanField(),
        },
    )


# The serializer field types payment_input_plain knows how to take as they are.
_PLAIN_KINDS = {StrictIntegerField: "int", serializers.CharField: "str", serializers.JSONField: "json",
                serializers.BooleanField: "bool", serializers.URLField: "url", serializers.DictField: "dict"}


@functools.cache
def _plain_fields() -> tuple | None:
    """PaymentCreateInput's declared fields as (name, kind, max_length, null, blank, default, required),
    read from the serializer once: one source for both paths. None (every body goes to DRF) if a
    field is of a type (a dict of a child type, a number or text with a lower bound or a number with
    an upper one) that payment_input_plain does not check."""
    out = []
    for name, field in PaymentListCreateApi.PaymentCreateInput._declared_fields.items():
        kind = _PLAIN_KINDS.get(type(field))
        if kind is None or (kind == "dict" and type(field.child) is not serializers.JSONField) or any(
                getattr(field, bound, None) is not None for bound in ("min_value", "max_value", "min_length")):
            return None
        text = kind in ("str", "url")
        out.append((name, kind, field.max_length if kind == "str" else None, field.allow_null,
                    text and field.allow_blank, None if field.default is serializers.empty else field.default,
                    field.required))
    return tuple(out)


def payment_input_plain(data) -> dict | None:
    """`PaymentCreateInput(data=data).validated_data` for a body DRF would take unchanged — every
    value of exactly the type its field keeps as it is (an int amount, a trimmed printable ASCII
    string within its length, a bool, JSON as parsed, a metadata object without nulls) — without
    building the serializer (DRF deep-copies its thirteen fields per request: ~4 % of a payment's
    CPU). None for anything else: DRF validates it then and words any error exactly as before.
    tests/payments/test_payment_input_plain.py checks both agree."""
    fields = _plain_fields()
    if fields is None or type(data) is not dict:
        return None
    out = {}
    for name, kind, max_length, null, blank, default, required in fields:
        if name not in data:
            if required:
                return None  # DRF says so
            if default is not None:
                out[name] = default
            continue
        value = data[name]
        if value is None:
            if not null:
                return None
            out[name] = None
        elif kind == "int":
            if type(value) is not int:
                return None
            out[name] = value
        elif kind == "bool":
            if type(value) is not bool:
                return None
            out[name] = value
        elif kind == "json":
            out[name] = value
        elif kind == "dict":
            if type(value) is not dict or any(v is None for v in value.values()):
                return None
            out[name] = dict(value)
        else:  # str, or a URL given blank (any other URL: DRF's URLValidator)
            if type(value) is not str or (kind == "url" and value != ""):
                return None
            if value == "":
                if not blank:
                    return None
            elif (len(value) > max_length or not value.isascii() or not value.isprintable()
                  or value != value.strip()):
                return None
            out[name] = value
    return out


class PaymentListCreateApi(MerchantApiView):
    # payment_create writes only in `_payment_insert`, which binds the key (before any PSP call)
    idempotency_claim_with_work = True

    class PaymentCreateInput(serializers.Serializer):
        amount = StrictIntegerField()
        currency = serializers.CharField(max_length=8)
        payment_method_data = serializers.JSONField(required=False, allow_null=True)
        payment_method = serializers.CharField(required=False, allow_null=True, max_length=64)
        customer = serializers.CharField(required=False, allow_null=True, max_length=64)
        capture_method = serializers.CharField(required=False, default="automatic", max_length=16)
        confirm = serializers.BooleanField(required=False, default=True)
        setup_future_usage = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=16)
        off_session = serializers.BooleanField(required=False, default=False)
        return_url = serializers.URLField(required=False, allow_null=True, allow_blank=True, max_length=2048,
                                          validators=[RETURN_URL_SCHEMES])
        description = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=1000)
        metadata = serializers.DictField(required=False, allow_null=True, child=serializers.JSONField())
        mandate_data = serializers.JSONField(
            required=False, allow_null=True,
            help_text='SEPA Direct Debit: the shopper\'s acceptance of the mandate, '
                      '{"customer_acceptance": {"type": "online", "online": {"ip_address", "user_agent"}}}; '
                      'default: the IP address and User-Agent of this request.')

    @extend_schema(operation_id="payments_create", request=PaymentCreateInput,
                   responses={201: PaymentOutputSerializer}, summary="Create (and by default confirm) a payment")
    def post(self, request):
        validated = payment_input_plain(request.data)
        if validated is None:  # anything else: DRF validates it (and words the error)
            serializer = self.PaymentCreateInput(data=request.data)
            serializer.is_valid(raise_exception=True)
            validated = serializer.validated_data
        # the key's answer is stored in the payment's last recording transaction when that one
        # leaves the payment as answered here (payments.services.payments._confirm_attempts)
        idempotency_answer_prepare(lambda payment: self._rendered(request, payment_answer(payment),
                                                                  status.HTTP_201_CREATED))
        payment = payment_create(merchant=request.merchant, actor=_actor(request), shopper_ip=client_ip(request),
                                 shopper_user_agent=request.headers.get("User-Agent", ""),
                                 **validated)
        # a confirmed payment comes back as its last recording transaction left (and rendered) it,
        # or read again with payment_get after it
        return Response(payment_answer(payment if payment.status != "requires_confirmation"
                                       else payment_get(merchant=request.merchant, payment_id=payment.id)),
                        status=status.HTTP_201_CREATED)

    def _rendered(self, request, data: dict, status_code: int) -> tuple[int, str, bytes]:
        """(status, content type, bytes) of the answer `data` exactly as this request gets it."""
        response = self.finalize_response(request, Response(data, status=status_code))
        response.render()
        return response.status_code, response.get("Content-Type", ""), bytes(response.content)

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having created `resource`: that payment, confirmed
        if the crash came before its confirmation was even started."""
        payment = payment_get(merchant=request.merchant, payment_id=resource)
        if payment.status == "requires_confirmation" and request.data.get("confirm", True) is not False:
            payment_confirm(merchant=request.merchant, payment_id=payment.id, actor=_actor(request))
        return Response(render_payment(payment_get(merchant=request.merchant, payment_id=resource)),
                        status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="payments_list", parameters=LIST_PARAMETERS,
                   responses={200: _list("PaymentList", PaymentOutputSerializer)}, summary="List payments")
    def get(self, request):
        # only payments no later commit can join below (payera.core.pagination)
        return Response(paginate(payment_list(merchant=request.merchant), params=request.query_params,
                                 render=render_payment, final_before=committed_before))


class PaymentDetailApi(MerchantApiView):
    @extend_schema(operation_id="payments_retrieve", responses={200: PaymentOutputSerializer},
                   summary="Retrieve a payment")
    def get(self, request, id: str):
        return Response(render_payment(payment_get(merchant=request.merchant, payment_id=id)))


def _payment_action_resume(view, request, resource: str):
    """`idempotent_resume` of confirm, capture and cancel: a retry after the first request crashed
    having begun its work on the payment (bound to the key in that work's first transaction) is
    answered the payment as that work left it — never the action again, which would be refused (the
    payment is no longer in the state it needs) and release the key."""
    return Response(render_payment(payment_get(merchant=request.merchant, payment_id=view.kwargs["id"])))


class PaymentConfirmApi(MerchantApiView):
    @extend_schema(operation_id="payments_confirm", request=None, responses={200: PaymentOutputSerializer},
                   summary="Confirm a payment created with confirm=false")
    def post(self, request, id: str):
        payment = payment_get(merchant=request.merchant, payment_id=id)
        payment_confirm(merchant=request.merchant, payment_id=payment.id, actor=_actor(request))
        return Response(render_payment(payment_get(merchant=request.merchant, payment_id=id)))

    idempotent_resume = _payment_action_resume


class PaymentCaptureApi(MerchantApiView):
    class PaymentCaptureInput(serializers.Serializer):
        amount_to_capture = StrictIntegerField(required=False, allow_null=True)

    @extend_schema(operation_id="payments_capture", request=PaymentCaptureInput,
                   responses={200: PaymentOutputSerializer}, summary="Capture an authorized payment")
    def post(self, request, id: str):
        payment = payment_get(merchant=request.merchant, payment_id=id)
        serializer = self.PaymentCaptureInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment_capture(merchant=request.merchant, payment_id=payment.id,
                        amount_to_capture=serializer.validated_data.get("amount_to_capture"), actor=_actor(request))
        return Response(render_payment(payment_get(merchant=request.merchant, payment_id=id)))

    idempotent_resume = _payment_action_resume


class PaymentCancelApi(MerchantApiView):
    @extend_schema(operation_id="payments_cancel", request=None, responses={200: PaymentOutputSerializer},
                   summary="Cancel a payment before capture")
    def post(self, request, id: str):
        payment = payment_get(merchant=request.merchant, payment_id=id)
        payment_cancel(merchant=request.merchant, payment_id=payment.id, actor=_actor(request))
        return Response(render_payment(payment_get(merchant=request.merchant, payment_id=id)))

    idempotent_resume = _payment_action_resume


class RefundListCreateApi(MerchantApiView):
    class RefundCreateInput(serializers.Serializer):
        payment = serializers.CharField(max_length=64)
        amount = StrictIntegerField(required=False, allow_null=True)
        currency = serializers.CharField(required=False, allow_null=True, max_length=8,
                                         help_text="Optional: the payment's currency (any other is 400).")
        reason = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=64)

    @extend_schema(operation_id="refunds_create", request=RefundCreateInput, responses={201: RefundOutputSerializer},
                   summary="Refund a captured payment, in full or in part")
    def post(self, request):
        serializer = self.RefundCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        refund = refund_create(merchant=request.merchant, payment_id=data["payment"], amount=data.get("amount"),
                               currency=data.get("currency"), reason=data.get("reason") or "", actor=_actor(request))
        return Response(render_refund(refund), status=status.HTTP_201_CREATED)

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having created refund `resource`: that refund
        (a pending one is resolved by recovery, as any refund whose answer was lost)."""
        return Response(render_refund(refund_get(merchant=request.merchant, refund_id=resource)),
                        status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="refunds_list",
                   parameters=[*LIST_PARAMETERS, OpenApiParameter("payment", str, description="Only this payment's.")],
                   responses={200: _list("RefundList", RefundOutputSerializer)}, summary="List refunds")
    def get(self, request):
        qs = refund_list(merchant=request.merchant, payment_id=request.query_params.get("payment"))
        # only refunds no later commit can join below (payera.core.pagination)
        return Response(paginate(qs, params=request.query_params, render=render_refund,
                                 final_before=committed_before))


class RefundDetailApi(MerchantApiView):
    @extend_schema(operation_id="refunds_retrieve", responses={200: RefundOutputSerializer},
                   summary="Retrieve a refund")
    def get(self, request, id: str):
        return Response(render_refund(refund_get(merchant=request.merchant, refund_id=id)))


class MoneySerializer(serializers.Serializer):
    amount = serializers.IntegerField()
    currency = serializers.CharField()


class BalanceOutputSerializer(serializers.Serializer):
    object = serializers.CharField()
    pending = MoneySerializer(many=True)
    available = MoneySerializer(many=True)
    escrow = MoneySerializer(many=True)


class BalanceApi(MerchantApiView):
    @extend_schema(operation_id="balance_retrieve", responses={200: BalanceOutputSerializer},
                   summary="The merchant's balance per currency")
    def get(self, request):
        balance = balance_get(owner=request.merchant.id)

        def money(items) -> list[dict]:
            return [{"amount": m.amount, "currency": m.currency} for m in items]

        return Response({"object": "balance", "pending": money(balance.pending),
                         "available": money(balance.available), "escrow": money(balance.escrow)})


class BalanceTransactionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    balance = serializers.CharField(help_text="pending | available | escrow | reserve")
    type = serializers.CharField()
    reference = serializers.CharField()
    description = serializers.CharField()
    created = serializers.IntegerField()


def _txn(entry) -> dict:
    # internal journals (staff adjustments) show an opaque reference and a fixed description
    reference, description = balance_transaction_public_text(journal_id=entry.journal_id, reference=entry.reference,
                                                             memo=entry.memo)  # fmt: skip
    return {
        "id": opaque_id("txn", entry.id), "object": "balance_transaction",
        # merchant accounts are liabilities: a credit (negative) is money owed to the merchant
        "amount": -entry.amount, "currency": entry.currency,
        "balance": entry.account_code.removeprefix("merchant_"), "type": entry.kind, "reference": reference,
        "description": description, "created": created_timestamp(entry.created_at),
    }


class BalanceTransactionListApi(MerchantApiView):
    @extend_schema(operation_id="balance_transactions_list", parameters=LIST_PARAMETERS,
                   responses={200: _list("BalanceTransactionList", BalanceTransactionOutputSerializer)},
                   summary="Movements of the merchant's balance, newest first")
    def get(self, request):
        limit = parse_limit(request.query_params.get("limit"))
        cursor = request.query_params.get("starting_after")
        key = opaque_id_key("txn", cursor) if cursor else None
        try:
            if cursor and key is None:
                raise BalanceTransactionCursorError()
            # booked order, only what nothing can be booked below any more (docs/api.md "Balance")
            rows, has_more = balance_transaction_page(owner=request.merchant.id, limit=limit, starting_after=key)
        except BalanceTransactionCursorError:
            message = f"No such object for starting_after: '{cursor}'."
            raise InvalidRequestError(message, param="starting_after") from None
        return Response({"object": "list", "data": [_txn(e) for e in rows], "has_more": has_more})


class BalanceTransactionDetailApi(MerchantApiView):
    @extend_schema(operation_id="balance_transactions_retrieve", responses={200: BalanceTransactionOutputSerializer},
                   summary="Retrieve a balance transaction")
    def get(self, request, id: str):
        key = opaque_id_key("txn", id)
        # the caller's own posted entries only: another merchant's txn_ answers like an unknown one
        entry = balance_transaction_list(owner=request.merchant.id).filter(id=key).first() if key is not None else None
        if entry is None:
            raise BalanceTransactionNotFoundError()
        return Response(_txn(entry))
