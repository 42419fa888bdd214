from django.urls import path

from reconciliation.api.views import PayoutDetailApi, PayoutListApi

urlpatterns: list = [
    path("payouts", PayoutListApi.as_view(), name="payout-list"),
    path("payouts/<str:id>", PayoutDetailApi.as_view(), name="payout-detail"),
]
