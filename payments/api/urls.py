from django.urls import path

from payments.api.customers import CustomerDetailApi, CustomerListCreateApi

urlpatterns: list = [
    path("customers", CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:id>", CustomerDetailApi.as_view(), name="customer-detail"),
]
