"""Customers API: `POST /v1/customers`, `GET /v1/customers/{id}`, `GET /v1/customers`."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from payera.core.db import created_timestamp
from payera.core.horizon import committed_before
from payera.core.pagination import paginate
from payera.merchants.api.base import MerchantApiView
from payments.selectors import customer_get, customer_list
from payments.services import customer_create


class CustomerOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    email = serializers.SerializerMethodField()
    name = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = serializers.SerializerMethodField()

    def get_object(self, obj) -> str:
        return "customer"

    def get_email(self, obj) -> str | None:
        return obj.email or None

    def get_name(self, obj) -> str | None:
        return obj.name or None

    def get_created(self, obj) -> int:
        return created_timestamp(obj.created_at)


def render_customer(customer) -> dict:
    return CustomerOutputSerializer(customer).data


CustomerListSerializer = inline_serializer(
    name="CustomerList",
    fields={
        "object": serializers.CharField(default="list"),
        "data": CustomerOutputSerializer(many=True),
        "has_more": serializers.BooleanField(),
    },
)

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 10."),
    OpenApiParameter("starting_after", str, description="An object id from the previous page: the next page."),
]


class CustomerListCreateApi(MerchantApiView):
    class CustomerCreateInput(serializers.Serializer):
        email = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=254)
        name = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=256)
        metadata = serializers.DictField(required=False, allow_null=True, child=serializers.JSONField())

    @extend_schema(
        operation_id="customers_create",
        request=CustomerCreateInput,
        responses={201: CustomerOutputSerializer},
        summary="Create a customer",
    )
    def post(self, request):
        serializer = self.CustomerCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = customer_create(merchant=request.merchant, **serializer.validated_data)
        return Response(render_customer(customer), status=status.HTTP_201_CREATED)

    def idempotent_resume(self, request, resource: str):
        """A retry after the first request crashed having created customer `resource`: that
        customer, never a second one."""
        return Response(render_customer(customer_get(merchant=request.merchant, customer_id=resource)),
                        status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="customers_list",
        parameters=LIST_PARAMETERS,
        responses={200: CustomerListSerializer},
        summary="List customers, newest first",
    )
    def get(self, request):
        # only customers no later commit can join below (payera.core.pagination)
        return Response(paginate(customer_list(merchant=request.merchant), params=request.query_params,
                                 render=render_customer, final_before=committed_before))


class CustomerDetailApi(MerchantApiView):
    @extend_schema(operation_id="customers_retrieve", responses={200: CustomerOutputSerializer},
                   summary="Retrieve a customer")
    def get(self, request, id: str):
        return Response(render_customer(customer_get(merchant=request.merchant, customer_id=id)))
