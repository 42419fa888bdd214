import pytest

from payera.core.errors import InvalidRequestError, NotFoundError
from payera.events.models import EndpointStatus, WebhookEndpoint
from payera.events.selectors import webhook_endpoint_get, webhook_endpoint_list
from payera.events.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_roll_secret,
    webhook_endpoint_update,
)
from payera.events.services.endpoints import decrypt_secret

pytestmark = pytest.mark.django_db

M = "mer_endpoints"
URL = "http://127.0.0.1:9/hook"


def test_create_answers_the_secret_once_and_stores_it_encrypted():
    created = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["payment.succeeded", "refund.*"])
    assert created.secret.startswith("whsec_") and len(created.secret) > 30
    row = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert row.id.startswith("we_") and row.status == EndpointStatus.ENABLED
    assert created.secret not in row.secret_ciphertext
    assert decrypt_secret(row.secret_ciphertext) == created.secret
    assert "secret" not in row.to_object()
    assert row.to_object()["enabled_events"] == ["payment.succeeded", "refund.*"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"url": URL, "enabled_events": []}, "enabled_events"),
        ({"url": URL, "enabled_events": "*"}, "enabled_events"),
        ({"url": URL, "enabled_events": ["*", "payment.succeeded"]}, "enabled_events"),
        ({"url": URL, "enabled_events": ["Payment Succeeded"]}, "enabled_events"),
        ({"url": URL, "enabled_events": [42]}, "enabled_events"),
        ({"url": "not a url", "enabled_events": ["*"]}, "url"),
        ({"url": "ftp://127.0.0.1/x", "enabled_events": ["*"]}, "url"),
        ({"url": URL, "enabled_events": ["*"], "description": "x" * 501}, "description"),
        ({"merchant_id": "", "url": URL, "enabled_events": ["*"]}, "merchant_id"),
    ],
)
def test_create_validates_its_input_with_the_param(kwargs, param):
    with pytest.raises(InvalidRequestError) as exc:
        webhook_endpoint_create(**{"merchant_id": M, **kwargs})
    assert exc.value.param == param and exc.value.http_status == 400
    assert not WebhookEndpoint.objects.exists()


def test_update_reenable_and_delete_are_scoped_to_the_merchant():
    endpoint = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"]).endpoint
    with pytest.raises(NotFoundError):
        webhook_endpoint_update(merchant_id="mer_other", endpoint_id=endpoint.pk, description="x")
    with pytest.raises(InvalidRequestError) as exc:
        webhook_endpoint_update(merchant_id=M, endpoint_id=endpoint.pk, status="paused")
    assert exc.value.param == "status"

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        status=EndpointStatus.DISABLED, consecutive_failures=12, failing_since=endpoint.created_at
    )
    updated = webhook_endpoint_update(
        merchant_id=M, endpoint_id=endpoint.pk, status="enabled", enabled_events=["payout.paid"], description="ops"
    )
    assert updated.status == "enabled" and updated.consecutive_failures == 0 and updated.failing_since is None
    assert updated.enabled_events == ["payout.paid"] and updated.description == "ops"
    assert list(webhook_endpoint_list(merchant_id=M)) == [updated]
    assert list(webhook_endpoint_list(merchant_id="mer_other")) == []

    with pytest.raises(NotFoundError):
        webhook_endpoint_delete(merchant_id="mer_other", endpoint_id=endpoint.pk)
    webhook_endpoint_delete(merchant_id=M, endpoint_id=endpoint.pk)
    with pytest.raises(NotFoundError):
        webhook_endpoint_get(merchant_id=M, endpoint_id=endpoint.pk)


def test_roll_keeps_the_old_secret_for_the_overlap_only():
    created = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    rolled = webhook_endpoint_roll_secret(merchant_id=M, endpoint_id=created.endpoint.pk, overlap_hours=24)
    row = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert decrypt_secret(row.secret_ciphertext) == rolled.secret
    assert decrypt_secret(row.previous_secret_ciphertext) == created.secret
    assert row.previous_secret_expires_at is not None

    again = webhook_endpoint_roll_secret(merchant_id=M, endpoint_id=row.pk, overlap_hours=0)
    row.refresh_from_db()
    assert decrypt_secret(row.secret_ciphertext) == again.secret
    assert row.previous_secret_ciphertext == "" and row.previous_secret_expires_at is None

    for bad in (-1, 1000, "24", True):
        with pytest.raises(InvalidRequestError) as exc:
            webhook_endpoint_roll_secret(merchant_id=M, endpoint_id=row.pk, overlap_hours=bad)
        assert exc.value.param == "overlap_hours"


def test_endpoint_changes_are_audited_without_the_secrets():
    from auditlog import get_logentry_model

    LogEntry = get_logentry_model()  # noqa: N806 - a model class
    created = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    webhook_endpoint_roll_secret(merchant_id=M, endpoint_id=created.endpoint.pk)
    webhook_endpoint_update(merchant_id=M, endpoint_id=created.endpoint.pk, description="ops")
    entries = LogEntry.objects.filter(object_pk=created.endpoint.pk)
    assert entries.count() >= 2
    dumped = " ".join(str(e.changes) for e in entries)
    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert "ciphertext" not in dumped and "description" in dumped
    assert endpoint.secret_ciphertext not in dumped and endpoint.previous_secret_ciphertext not in dumped
