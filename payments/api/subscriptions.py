"""Subscriptions and saved payment methods (CONTRACT "Customers, saved cards, recurring")."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from payera.core.errors import InvalidRequestError
from payera.core.fields import StrictIntegerField
from payera.core.horizon import committed_before
from payera.core.pagination import paginate
from payera.merchants.api.base import MerchantApiView
from payments.api.payments import LIST_PARAMETERS, _actor, _list
from payments.selectors import (
    customer_payment_method_list,
    payment_method_get,
    payment_method_list,
    subscription_get,
    subscription_list,
)
from payments.serializers_recurring import (
    SavedPaymentMethodOutputSerializer,
    SubscriptionOutputSerializer,
    render_payment_method,
    render_subscription,
)
from payments.services import (
    payment_method_detach,
    subscription_cancel,
    subscription_create,
    subscription_create_resume,
    subscription_update,
)


class SubscriptionListCreateApi(MerchantApiView):
    class SubscriptionCreateInput(serializers.Serializer):
        customer = serializers.CharField(max_length=64)
        payment_method = serializers.CharField(max_length=64)
        amount = StrictIntegerField()
        currency = serializers.CharField(max_length=8)
        interval = serializers.CharField(max_length=8, help_text="day | week | month | year")
        interval_count = StrictIntegerField(required=False, default=1)
        description = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=1000)
        metadata = serializers.DictField(required=False, allow_null=True, child=serializers.JSONField())
        cancel_at_period_end = serializers.BooleanField(
            required=False, default=False, help_text="true: the first period is charged now as usual, and the "
                                                     "subscription is canceled when the period paid last ends, with "
                                                     "no further charge (as on update).")

    @extend_schema(operation_id="subscriptions_create", request=SubscriptionCreateInput,
                   responses={201: SubscriptionOutputSerializer},
                   summary="Create a subscription (its first period is charged at once, off session)")
    def post(self, request):
        serializer = self.SubscriptionCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        sub = subscription_create(merchant=request.merchant, actor=_actor(request), **serializer.validated_data)
        return Response(render_subscription(sub), status=status.HTTP_201_CREATED)

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having created subscription `resource`: that
        subscription, its first period charged (once) if the crash came before the charge."""
        sub = subscription_create_resume(merchant=request.merchant, subscription_id=resource)
        return Response(render_subscription(sub), status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="subscriptions_list",
                   parameters=[*LIST_PARAMETERS,
                               OpenApiParameter("customer", str, description="Only this customer's."),
                               OpenApiParameter("status", str, description="Only subscriptions in this status: "
                                                "active, past_due, unpaid or canceled.")],
                   responses={200: _list("SubscriptionList", SubscriptionOutputSerializer)},
                   summary="List subscriptions")
    def get(self, request):
        qs = subscription_list(merchant=request.merchant, customer=request.query_params.get("customer"),
                               status=request.query_params.get("status"))
        # only subscriptions no later commit can join below (payera.core.pagination)
        return Response(paginate(qs, params=request.query_params, render=render_subscription,
                                 final_before=committed_before))


class SubscriptionDetailApi(MerchantApiView):
    class SubscriptionUpdateInput(serializers.Serializer):
        payment_method = serializers.CharField(required=False, max_length=64,
                                               help_text="Another saved method of the same customer.")
        metadata = serializers.DictField(required=False, allow_null=True, child=serializers.JSONField())
        cancel_at_period_end = serializers.BooleanField(
            required=False, help_text="true: cancel it when the period paid last ends, with no further charge "
                                      "(active only); false: renew as usual.")

    @extend_schema(operation_id="subscriptions_retrieve", responses={200: SubscriptionOutputSerializer},
                   summary="Retrieve a subscription")
    def get(self, request, id: str):
        return Response(render_subscription(subscription_get(merchant=request.merchant, subscription_id=id)))

    @extend_schema(operation_id="subscriptions_update", request=SubscriptionUpdateInput,
                   responses={200: SubscriptionOutputSerializer},
                   summary="Update a subscription (a new card while past_due: the next retry charges it; "
                           "while unpaid: the period in progress is charged at once; cancel_at_period_end)")
    def post(self, request, id: str):
        subscription_get(merchant=request.merchant, subscription_id=id)  # 404 before validating the body
        serializer = self.SubscriptionUpdateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        sub = subscription_update(merchant=request.merchant, subscription_id=id, actor=_actor(request),
                                  **serializer.validated_data)
        return Response(render_subscription(sub))


class SubscriptionCancelApi(MerchantApiView):
    @extend_schema(operation_id="subscriptions_cancel", request=None, responses={200: SubscriptionOutputSerializer},
                   summary="Cancel a subscription at once (no further charge)")
    def post(self, request, id: str):
        subscription_get(merchant=request.merchant, subscription_id=id)
        sub = subscription_cancel(merchant=request.merchant, subscription_id=id, actor=_actor(request))
        return Response(render_subscription(sub))


def _include_detached(params) -> bool:
    """The `include_detached` query flag of both payment method lists: true/1 or false/0, once."""
    given = params.getlist("include_detached")
    if given and (len(given) > 1 or given[0] not in ("true", "false", "1", "0")):
        raise InvalidRequestError("include_detached must be true or false.", param="include_detached")
    return given in (["true"], ["1"])


class PaymentMethodListApi(MerchantApiView):
    @extend_schema(operation_id="payment_methods_list",
                   parameters=[*LIST_PARAMETERS,
                               OpenApiParameter("customer", str, description="Only this customer's saved methods."),
                               OpenApiParameter("include_detached", bool, description="Also detached ones.")],
                   responses={200: _list("PaymentMethodList", SavedPaymentMethodOutputSerializer)},
                   summary="List the payment methods (masked data only)")
    def get(self, request):
        qs = payment_method_list(
            merchant=request.merchant, customer_id=request.query_params.get("customer"),
            include_detached=_include_detached(request.query_params),
        )
        # only methods no later commit can join below (payera.core.pagination)
        return Response(paginate(qs, params=request.query_params, render=render_payment_method,
                                 final_before=committed_before))


class PaymentMethodDetailApi(MerchantApiView):
    @extend_schema(operation_id="payment_methods_retrieve", responses={200: SavedPaymentMethodOutputSerializer},
                   summary="Retrieve a payment method (masked data only)")
    def get(self, request, id: str):
        return Response(render_payment_method(payment_method_get(merchant=request.merchant, payment_method_id=id)))


class PaymentMethodDetachApi(MerchantApiView):
    @extend_schema(operation_id="payment_methods_detach", request=None,
                   responses={200: SavedPaymentMethodOutputSerializer},
                   summary="Detach a saved payment method: its number is destroyed (crypto-shred), for good")
    def post(self, request, id: str):
        payment_method_get(merchant=request.merchant, payment_method_id=id)
        pm = payment_method_detach(merchant=request.merchant, payment_method_id=id, actor=_actor(request))
        return Response(render_payment_method(payment_method_get(merchant=request.merchant, payment_method_id=pm.id)))


class CustomerPaymentMethodListApi(MerchantApiView):
    @extend_schema(operation_id="customers_payment_methods_list",
                   parameters=[*LIST_PARAMETERS,
                               OpenApiParameter("fingerprint", str, description="Only methods with this fingerprint "
                                                "(the same card saved more than once)."),
                               OpenApiParameter("include_detached", bool, description="Also detached ones.")],
                   responses={200: _list("CustomerPaymentMethodList", SavedPaymentMethodOutputSerializer)},
                   summary="List a customer's saved payment methods")
    def get(self, request, id: str):
        # only methods no later commit can join below (payera.core.pagination); a first page's horizon
        # is read before `fingerprint` is matched (in Python, over the methods committed then): read
        # after, it could pass a method that committed in between, left out of the match
        horizon = committed_before() if not request.query_params.get("starting_after") else None
        qs = customer_payment_method_list(
            merchant=request.merchant, customer_id=id, fingerprint=request.query_params.get("fingerprint"),
            include_detached=_include_detached(request.query_params),
        )
        return Response(paginate(qs, params=request.query_params, render=render_payment_method,
                                 final_before=lambda: horizon))
