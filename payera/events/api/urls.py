from django.urls import path

from payera.events.api.views import (
    EventDetailApi,
    EventListApi,
    WebhookEndpointDetailApi,
    WebhookEndpointListCreateApi,
    WebhookEndpointRollSecretApi,
)

urlpatterns = [
    path("events", EventListApi.as_view(), name="event-list"),
    path("events/<str:id>", EventDetailApi.as_view(), name="event-detail"),
    path("webhook_endpoints", WebhookEndpointListCreateApi.as_view(), name="webhook-endpoint-list"),
    path("webhook_endpoints/<str:id>", WebhookEndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path(
        "webhook_endpoints/<str:id>/roll_secret",
        WebhookEndpointRollSecretApi.as_view(),
        name="webhook-endpoint-roll-secret",
    ),
]
