from django.urls import path

from payments.api.bookings import (
    BookingCancelApi,
    BookingCompleteApi,
    BookingConfirmApi,
    BookingDetailApi,
    BookingListCreateApi,
)
from payments.api.customers import CustomerDetailApi, CustomerListCreateApi
from payments.api.disputes import DisputeDetailApi, DisputeEvidenceApi, DisputeListApi
from payments.api.payments import (
    BalanceApi,
    BalanceTransactionDetailApi,
    BalanceTransactionListApi,
    PaymentCancelApi,
    PaymentCaptureApi,
    PaymentConfirmApi,
    PaymentDetailApi,
    PaymentListCreateApi,
    RefundDetailApi,
    RefundListCreateApi,
)
from payments.api.subscriptions import (
    CustomerPaymentMethodListApi,
    PaymentMethodDetachApi,
    PaymentMethodDetailApi,
    PaymentMethodListApi,
    SubscriptionCancelApi,
    SubscriptionDetailApi,
    SubscriptionListCreateApi,
)

urlpatterns: list = [
    path("customers", CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:id>", CustomerDetailApi.as_view(), name="customer-detail"),
    path("payments", PaymentListCreateApi.as_view(), name="payment-list"),
    path("payments/<str:id>", PaymentDetailApi.as_view(), name="payment-detail"),
    path("payments/<str:id>/confirm", PaymentConfirmApi.as_view(), name="payment-confirm"),
    path("payments/<str:id>/capture", PaymentCaptureApi.as_view(), name="payment-capture"),
    path("payments/<str:id>/cancel", PaymentCancelApi.as_view(), name="payment-cancel"),
    path("refunds", RefundListCreateApi.as_view(), name="refund-list"),
    path("refunds/<str:id>", RefundDetailApi.as_view(), name="refund-detail"),
    path("disputes", DisputeListApi.as_view(), name="dispute-list"),
    path("disputes/<str:id>", DisputeDetailApi.as_view(), name="dispute-detail"),
    path("disputes/<str:id>/evidence", DisputeEvidenceApi.as_view(), name="dispute-evidence"),
    path("customers/<str:id>/payment_methods", CustomerPaymentMethodListApi.as_view(),
         name="customer-payment-method-list"),
    path("payment_methods", PaymentMethodListApi.as_view(), name="payment-method-list"),
    path("payment_methods/<str:id>", PaymentMethodDetailApi.as_view(), name="payment-method-detail"),
    path("payment_methods/<str:id>/detach", PaymentMethodDetachApi.as_view(), name="payment-method-detach"),
    path("subscriptions", SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path("subscriptions/<str:id>", SubscriptionDetailApi.as_view(), name="subscription-detail"),
    path("subscriptions/<str:id>/cancel", SubscriptionCancelApi.as_view(), name="subscription-cancel"),
    path("bookings", BookingListCreateApi.as_view(), name="booking-list"),
    path("bookings/<str:id>", BookingDetailApi.as_view(), name="booking-detail"),
    path("bookings/<str:id>/confirm", BookingConfirmApi.as_view(), name="booking-confirm"),
    path("bookings/<str:id>/complete", BookingCompleteApi.as_view(), name="booking-complete"),
    path("bookings/<str:id>/cancel", BookingCancelApi.as_view(), name="booking-cancel"),
    path("balance", BalanceApi.as_view(), name="balance"),
    path("balance_transactions", BalanceTransactionListApi.as_view(), name="balance-transaction-list"),
    path("balance_transactions/<str:id>", BalanceTransactionDetailApi.as_view(), name="balance-transaction-detail"),
]
