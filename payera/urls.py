from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from payera.core import health
from payera.core.metrics import metrics_view
from payments.inbound_urls import return_urlpatterns, webhook_urlpatterns

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; bearer token or loopback only
    path("admin/", admin.site.urls),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Each app mounts its public API under /v1/ through its own api/urls.py.
    path("v1/", include("payera.core.api_urls")),
    path("v1/", include("payera.merchants.api.urls")),
    path("v1/", include("payera.events.api.urls")),
    path("v1/", include("ledger.api.urls")),
    path("v1/", include("payments.api.urls")),
    path("v1/", include("reconciliation.api.urls")),
    # PSP webhooks (verified, stored, applied by a task) and the shopper's 3-D Secure return.
    path("webhooks/psp/", include(webhook_urlpatterns)),
    path("payments/", include(return_urlpatterns)),
    path("webhooks/", include("psp_adapters.webhook_urls")),
]

handler400 = "payera.core.api.handler400"
handler403 = "payera.core.api.handler403"
handler404 = "payera.core.api.handler404"
handler500 = "payera.core.api.handler500"
