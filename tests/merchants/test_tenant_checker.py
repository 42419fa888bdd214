"""The tenant-isolation checks themselves catch leaks (run against a small URLconf of fakes)."""

from __future__ import annotations

import pytest
from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response

from payera.merchants.api.base import MerchantApiView
from payments.models import Customer
from payments.selectors import customer_get
from tests.merchants.tenant_routes import Owned, Ref
from tests.merchants.test_tenant_isolation import (
    check_list_route,
    check_object_route,
    check_references,
    missing_entries,
    v1_routes,
)


def _customer(merchant):
    from payments.services import customer_create

    return customer_create(merchant=merchant).id


def _render(c):
    return {"id": c.id, "object": "customer"}


class ScopedDetail(MerchantApiView):
    def get(self, request, id):
        return Response(_render(customer_get(merchant=request.merchant, customer_id=id)))


class LeakyDetail(MerchantApiView):
    def get(self, request, id):
        return Response(_render(Customer.objects.get(pk=id)))


class LeakyList(MerchantApiView):
    def get(self, request):
        return Response({"object": "list", "data": [_render(c) for c in Customer.objects.all()], "has_more": False})


class ScopedRefCreate(MerchantApiView):
    def post(self, request):
        customer_get(merchant=request.merchant, customer_id=request.data["customer"])
        return Response({}, status=201)


class LeakyRefCreate(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        customer = serializers.CharField()

    def post(self, request):
        Customer.objects.get(pk=request.data["customer"])
        return Response({}, status=201)


urlpatterns = [
    path("v1/scoped/<str:id>", ScopedDetail.as_view(), name="scoped-detail"),
    path("v1/leaky/<str:id>", LeakyDetail.as_view(), name="leaky-detail"),
    path("v1/leaky", LeakyList.as_view(), name="leaky-list"),
    path("v1/scoped-ref", ScopedRefCreate.as_view(), name="scoped-ref"),
    path("v1/leaky-ref", LeakyRefCreate.as_view(), name="leaky-ref"),
    path("v1/unnamed", LeakyList.as_view()),
]
ENTRY = Owned(create=_customer)
REGISTRY = {"scoped-detail": ENTRY}
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def _route(name):
    return next(r for r in v1_routes(__name__) if r.name == name)


def test_unregistered_and_unnamed_routes_are_reported():
    missing = {str(r) for r in missing_entries(v1_routes(__name__))}
    assert "<unnamed> (v1/unnamed)" in missing
    assert "leaky-detail (v1/leaky/<str:id>)" in missing


def test_a_scoped_detail_route_passes_and_a_leaky_one_fails():
    check_object_route(_route("scoped-detail"), ENTRY)
    with pytest.raises(AssertionError, match="as another merchant"):
        check_object_route(_route("leaky-detail"), ENTRY)


def test_a_leaky_list_fails():
    with pytest.raises(AssertionError, match="another merchant"):
        check_list_route(_route("leaky-list"), ENTRY)


def test_a_body_reference_to_another_merchants_object_must_be_404():
    entry = Owned(create=_customer, references=(Ref("scoped-detail", lambda cus: {"customer": cus}),))
    check_references(_route("scoped-ref"), entry, REGISTRY)
    with pytest.raises(AssertionError, match="naming another merchant"):
        check_references(_route("leaky-ref"), entry, REGISTRY)
