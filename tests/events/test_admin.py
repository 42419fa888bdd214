import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User

from payera.events.models import DeliveryStatus, WebhookDelivery
from payera.events.services import event_relay, webhook_endpoint_create
from tests.backoffice.staff import otp_force_login
from tests.events.helpers import record

pytestmark = pytest.mark.django_db

URL = "/admin/events/webhookdelivery/"


@pytest.fixture
def dead_delivery(enqueued) -> WebhookDelivery:
    webhook_endpoint_create(merchant_id="mer_admin", url="http://127.0.0.1:9/x", enabled_events=["*"])
    [delivery_id] = event_relay(event_id=record("mer_admin").id)
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=DeliveryStatus.DEAD, next_attempt_at=None)
    return WebhookDelivery.objects.get(pk=delivery_id)


def _staff(client, *perms: str) -> None:
    user = User.objects.create_user("ops", password="x" * 16, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="events", codename__in=perms))
    user.user_permissions.add(Permission.objects.get(codename="access_all_merchants"))  # no merchant limit
    otp_force_login(client, user)


def test_replay_action_needs_the_replay_permission(client, dead_delivery):
    _staff(client, "view_webhookdelivery", "view_event")
    page = client.get(URL)
    assert page.status_code == 200 and b"replay_deliveries" not in page.content
    client.post(URL, {"action": "replay_deliveries", "_selected_action": [dead_delivery.pk], "confirm": "yes",
                      "reason": "merchant asked"})
    dead_delivery.refresh_from_db()
    assert dead_delivery.status == DeliveryStatus.DEAD
    assert client.get(f"/admin/events/event/{quote(dead_delivery.event_id)}/change/").status_code == 200
    assert client.get("/admin/events/event/add/").status_code == 403


def test_operator_with_permission_replays_a_dead_letter(client, dead_delivery, enqueued):
    _staff(client, "view_webhookdelivery", "replay_delivery")
    assert b"replay_deliveries" in client.get(URL).content
    # the action asks for a reason first (payera.backoffice.actions), then replays
    client.post(URL, {"action": "replay_deliveries", "_selected_action": [dead_delivery.pk], "confirm": "yes",
                      "reason": "merchant fixed the endpoint"})
    dead_delivery.refresh_from_db()
    assert dead_delivery.status == DeliveryStatus.PENDING and dead_delivery.replay_count == 1
