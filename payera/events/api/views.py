"""Merchant API for events and webhook endpoints (CONTRACT "Webhooks to merchants").

`POST /v1/webhook_endpoints` answers once with the `whsec_…` secret; `GET /v1/events` lists
what happened, newest first.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from payera.core.horizon import committed_before
from payera.core.pagination import paginate
from payera.events.selectors import (
    event_get,
    event_list,
    webhook_endpoint_get,
    webhook_endpoint_list,
    webhook_endpoint_with_secret,
)
from payera.events.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_roll_secret,
    webhook_endpoint_update,
)
from payera.merchants.api.base import MerchantApiView

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 10."),
    OpenApiParameter("starting_after", str, description="An object id from the previous page: the next page."),
]

EventSerializer = inline_serializer(
    "Event",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(default="event"),
        "type": serializers.CharField(),
        "created": serializers.IntegerField(),
        "data": serializers.DictField(),
    },
)
EndpointSerializer = inline_serializer(
    "WebhookEndpoint",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(default="webhook_endpoint"),
        "url": serializers.URLField(),
        "description": serializers.CharField(),
        "enabled_events": serializers.ListField(child=serializers.CharField()),
        "status": serializers.CharField(),
        "created": serializers.IntegerField(),
        "secret": serializers.CharField(required=False, help_text="Only in the answer that creates or rolls it."),
    },
)


def _list_of(name: str, item) -> serializers.Serializer:
    return inline_serializer(
        name,
        {
            "object": serializers.CharField(default="list"),
            "data": item(many=True),
            "has_more": serializers.BooleanField(),
        },
    )


class EventListApi(MerchantApiView):
    @extend_schema(
        operation_id="events_list",
        parameters=[*LIST_PARAMETERS, OpenApiParameter("type", str, description="Only events of this type.")],
        responses={200: _list_of("EventList", EventSerializer.__class__)},
        summary="List events, newest first",
    )
    def get(self, request):
        qs = event_list(merchant_id=request.merchant.id, type=request.query_params.get("type") or None)
        # only events that can no longer be joined below by a late commit (payera.core.pagination)
        return Response(
            paginate(qs, params=request.query_params, render=lambda e: e.to_payload(), final_before=committed_before)
        )


class EventDetailApi(MerchantApiView):
    @extend_schema(operation_id="events_retrieve", responses={200: EventSerializer}, summary="Retrieve an event")
    def get(self, request, id: str):
        return Response(event_get(merchant_id=request.merchant.id, event_id=id).to_payload())


class WebhookEndpointListCreateApi(MerchantApiView):
    idempotency_sensitive = True  # the stored answer holds the secret: kept encrypted

    class WebhookEndpointCreateInput(serializers.Serializer):
        url = serializers.CharField(max_length=2048)
        enabled_events = serializers.ListField(
            child=serializers.CharField(max_length=100), allow_empty=False, min_length=1
        )
        description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=WebhookEndpointCreateInput,
        responses={201: EndpointSerializer},
        summary="Create a webhook endpoint (its secret is shown once)",
    )
    def post(self, request):
        data = self.WebhookEndpointCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        created = webhook_endpoint_create(merchant_id=request.merchant.id, **data.validated_data)
        return Response(created.endpoint.to_object() | {"secret": created.secret}, status=status.HTTP_201_CREATED)

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having created endpoint `resource`: that endpoint
        and its secret, never a second endpoint."""
        found = webhook_endpoint_with_secret(merchant_id=request.merchant.id, endpoint_id=resource)
        return Response(found.endpoint.to_object() | {"secret": found.secret}, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="webhook_endpoints_list",
        parameters=LIST_PARAMETERS,
        responses={200: _list_of("WebhookEndpointList", EndpointSerializer.__class__)},
        summary="List webhook endpoints",
    )
    def get(self, request):
        qs = webhook_endpoint_list(merchant_id=request.merchant.id)
        # as events: only endpoints no later commit can join below (payera.core.pagination)
        return Response(
            paginate(qs, params=request.query_params, render=lambda e: e.to_object(), final_before=committed_before)
        )


class WebhookEndpointDetailApi(MerchantApiView):
    class WebhookEndpointUpdateInput(serializers.Serializer):
        url = serializers.CharField(max_length=2048, required=False)
        enabled_events = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
        description = serializers.CharField(required=False, allow_blank=True, max_length=500)
        status = serializers.ChoiceField(choices=["enabled", "disabled"], required=False)

    @extend_schema(operation_id="webhook_endpoints_retrieve", responses={200: EndpointSerializer})
    def get(self, request, id: str):
        return Response(webhook_endpoint_get(merchant_id=request.merchant.id, endpoint_id=id).to_object())

    @extend_schema(
        operation_id="webhook_endpoints_update", request=WebhookEndpointUpdateInput, responses={200: EndpointSerializer}
    )
    def post(self, request, id: str):
        webhook_endpoint_get(merchant_id=request.merchant.id, endpoint_id=id)  # 404 before 400
        data = self.WebhookEndpointUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(merchant_id=request.merchant.id, endpoint_id=id, **data.validated_data)
        return Response(endpoint.to_object())

    @extend_schema(operation_id="webhook_endpoints_delete", responses={200: EndpointSerializer})
    def delete(self, request, id: str):
        endpoint = webhook_endpoint_get(merchant_id=request.merchant.id, endpoint_id=id)
        body = endpoint.to_object() | {"deleted": True}
        webhook_endpoint_delete(merchant_id=request.merchant.id, endpoint_id=id)
        return Response(body)


class WebhookEndpointRollSecretApi(MerchantApiView):
    idempotency_sensitive = True

    class WebhookEndpointRollSecretInput(serializers.Serializer):
        overlap_hours = serializers.FloatField(required=False, default=24, min_value=0, max_value=168)

    @extend_schema(
        operation_id="webhook_endpoints_roll_secret",
        request=WebhookEndpointRollSecretInput,
        responses={200: EndpointSerializer},
        summary="Roll the signing secret; the old one keeps signing during the overlap",
    )
    def post(self, request, id: str):
        webhook_endpoint_get(merchant_id=request.merchant.id, endpoint_id=id)
        data = self.WebhookEndpointRollSecretInput(data=request.data)
        data.is_valid(raise_exception=True)
        rolled = webhook_endpoint_roll_secret(merchant_id=request.merchant.id, endpoint_id=id, **data.validated_data)
        return Response(rolled.endpoint.to_object() | {"secret": rolled.secret})

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having rolled the secret: the secret that roll
        made (the one signing now), never a second roll — which would end the overlap of the
        secret the merchant still verifies with."""
        found = webhook_endpoint_with_secret(merchant_id=request.merchant.id, endpoint_id=resource)
        return Response(found.endpoint.to_object() | {"secret": found.secret})
