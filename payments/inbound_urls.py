from django.urls import path

from payments.api.inbound import payment_return, psp_webhook

webhook_urlpatterns: list = [path("<str:connector>/", psp_webhook, name="psp-webhook")]
return_urlpatterns: list = [path("return/<str:payment_id>", payment_return, name="payment-return")]
