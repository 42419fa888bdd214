"""Payouts API: `GET /v1/payouts`, `GET /v1/payouts/{id}` (merchant-scoped, read only)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from payera.core.horizon import committed_before
from payera.core.pagination import paginate
from payera.merchants.api.base import MerchantApiView
from reconciliation.objects import payout_object
from reconciliation.selectors import payout_get, payout_list


class PayoutDestinationSerializer(serializers.Serializer):
    type = serializers.CharField()
    masked = serializers.CharField(allow_null=True)


class PayoutOutputSerializer(serializers.Serializer):
    """Documents `reconciliation.objects.payout_object` (the one renderer of a payout)."""

    id = serializers.CharField()
    object = serializers.CharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "in_transit", "paid", "failed"])
    destination = PayoutDestinationSerializer()
    failure_reason = serializers.CharField(allow_null=True)
    payout_date = serializers.DateField()
    in_transit_at = serializers.IntegerField(allow_null=True)
    paid_at = serializers.IntegerField(allow_null=True)
    failed_at = serializers.IntegerField(allow_null=True)
    created = serializers.IntegerField()


PayoutListSerializer = inline_serializer(
    name="PayoutList",
    fields={
        "object": serializers.CharField(default="list"),
        "data": PayoutOutputSerializer(many=True),
        "has_more": serializers.BooleanField(),
    },
)

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 10."),
    OpenApiParameter("starting_after", str, description="An object id from the previous page: the next page."),
]


class PayoutListApi(MerchantApiView):
    @extend_schema(operation_id="payouts_list", parameters=LIST_PARAMETERS, responses={200: PayoutListSerializer},
                   summary="List payouts, newest first")
    def get(self, request):
        return Response(
            # only payouts no later commit can join below (payera.core.pagination)
            paginate(payout_list(merchant=request.merchant), params=request.query_params, render=payout_object,
                     final_before=committed_before)
        )


class PayoutDetailApi(MerchantApiView):
    @extend_schema(operation_id="payouts_retrieve", responses={200: PayoutOutputSerializer},
                   summary="Retrieve a payout")
    def get(self, request, id: str):
        return Response(payout_object(payout_get(merchant=request.merchant, payout_id=id)))
