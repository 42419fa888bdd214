"""Payera's URLs plus `POST /bench/bare`: a bare DRF endpoint that inserts one row (the baseline)."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from payera.urls import urlpatterns as payera_urlpatterns
from payments.models import Customer


class BareApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def post(self, request):
        row = Customer.objects.create(merchant_id=request.data["merchant"], name="bare")
        return Response({"id": row.id}, status=201)


urlpatterns = [*payera_urlpatterns, path("bench/bare", BareApi.as_view())]
