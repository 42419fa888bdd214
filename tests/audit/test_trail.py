"""For a create, an update and a delete: who, when, what changed, from where — through the real
admin with the real middleware stack, and through the API actor the auth class binds."""

import pytest
from auditlog.models import LogEntry as StockLogEntry
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from payera.audit.context import bind_actor, clear_actor
from payera.audit.models import AuditLogEntry
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db


def _records(obj_pk, model=Group):
    from django.contrib.contenttypes.models import ContentType

    return AuditLogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(model), object_pk=str(obj_pk)
    ).order_by("timestamp", "pk")


def test_admin_create_update_delete_record_who_when_what_where(client, staff_admin):
    otp_force_login(client, staff_admin)
    before = timezone.now()
    meta = {"REMOTE_ADDR": "198.51.100.23"}

    response = client.post(
        "/admin/auth/group/add/", {"name": "night-shift"}, HTTP_X_REQUEST_ID="req_create_0001", **meta
    )
    assert response.status_code == 302
    group = Group.objects.get(name="night-shift")
    perm = Permission.objects.get(codename="view_group")
    response = client.post(
        f"/admin/auth/group/{group.pk}/change/",
        {"name": "night-ops", "permissions": [perm.pk]},
        HTTP_X_REQUEST_ID="req_update_0001",
        **meta,
    )
    assert response.status_code == 302
    response = client.post(
        f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"}, HTTP_X_REQUEST_ID="req_delete_0001", **meta
    )
    assert response.status_code == 302
    assert not Group.objects.filter(pk=group.pk).exists()

    records = list(_records(group.pk))
    create = next(r for r in records if r.action == AuditLogEntry.Action.CREATE)
    update = next(r for r in records if r.action == AuditLogEntry.Action.UPDATE and "name" in r.changes_dict)
    delete = next(r for r in records if r.action == AuditLogEntry.Action.DELETE)
    for record, request_id in ((create, "req_create_0001"), (update, "req_update_0001"), (delete, "req_delete_0001")):
        assert record.actor_id == staff_admin.pk  # who
        assert record.actor_email == "ada@payera.test"
        assert record.api_key_id == "" and record.merchant_id == ""
        assert before <= record.timestamp <= timezone.now()  # when
        assert record.remote_addr == "198.51.100.23"  # from where
        assert record.request_id == request_id and record.cid == request_id
        assert record.actor_label == "staff:ada@payera.test"
    # what changed
    assert create.changes_dict["name"] == ["None", "night-shift"]
    assert update.changes_dict["name"] == ["night-shift", "night-ops"]
    assert delete.changes_dict["name"] == ["night-ops", "None"]
    m2m = [r for r in records if r.changes_dict.get("permissions", {}).get("type") == "m2m"]
    assert m2m and m2m[0].request_id == "req_update_0001"
    # auditlog's stock model is swapped out for ours
    assert StockLogEntry._meta.swapped == "audit.AuditLogEntry"


def test_api_key_actor_is_recorded():
    token = bind_actor(
        api_key_id="key_live_123", merchant_id="mer_abc", remote_addr="203.0.113.7", request_id="req_api_1"
    )
    try:
        group = Group.objects.create(name="via-api")
    finally:
        clear_actor(token)
    record = _records(group.pk).get()
    assert record.actor_id is None
    assert (record.api_key_id, record.merchant_id, record.remote_addr, record.request_id) == (
        "key_live_123", "mer_abc", "203.0.113.7", "req_api_1",
    )
    assert record.actor_label == "api_key:key_live_123 (merchant mer_abc)"


def test_without_actor_the_record_says_system():
    group = Group.objects.create(name="from-a-task")
    record = _records(group.pk).get()
    assert record.actor_label == "system" and record.remote_addr is None and record.request_id == ""


def test_secret_fields_are_never_recorded(django_user_model):
    user = django_user_model.objects.create_user("bob", "bob@payera.test", "a-long-password-123")
    user.set_password("another-long-password-456")
    user.save()
    for record in _records(user.pk, django_user_model):
        assert "password" not in record.changes_dict
        assert "a-long-password-123" not in (record.changes_text + str(record.changes))
        assert "pbkdf2" not in str(record.changes) and "md5" not in str(record.changes)


def test_registry_excludes_sensitive_names_even_if_not_listed(monkeypatch):
    from auditlog.registry import auditlog

    from payera.audit import registry

    assert "password" in registry.sensitive_fields(Group._meta.apps.get_model("auth", "User"))
    calls = {}
    monkeypatch.setattr(auditlog, "register", lambda model, **kw: calls.update(kw))
    registry.register(Group._meta.apps.get_model("auth", "User"), exclude_fields=["email"])
    assert {"password", "email"} <= set(calls["exclude_fields"])


def test_object_merchant_is_recorded_for_scoping(monkeypatch):
    from payera.audit import registry

    monkeypatch.setitem(registry._merchant_attr, Group, "name")  # stands in for a `merchant` FK
    group = Group.objects.create(name="mer_owner123")
    assert _records(group.pk).get().object_merchant_id == "mer_owner123"


def test_middleware_ignores_spoofed_forwarded_for_without_trusted_proxies(client, staff_admin, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    otp_force_login(client, staff_admin)
    client.post("/admin/auth/group/add/", {"name": "g1"}, REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert _records(Group.objects.get(name="g1").pk).get().remote_addr == "198.51.100.1"

    settings.TRUSTED_PROXY_COUNT = 1
    client.post(
        "/admin/auth/group/add/", {"name": "g2"}, REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.77",
    )
    assert _records(Group.objects.get(name="g2").pk).get().remote_addr == "198.51.100.77"


def test_actor_is_unbound_after_the_request(client, staff_admin):
    from payera.audit.context import current_actor

    otp_force_login(client, staff_admin)
    client.get("/admin/")
    assert current_actor() is None


def test_rolling_a_webhook_signing_secret_is_in_the_audit_trail_without_the_secret(make_merchant_client):
    """Was: rolling an endpoint's signing secret changed only fields the audit trail never records
    (the secret ciphertexts, `previous_secret_expires_at` — its name says secret — and the excluded
    `updated_at`), so auditlog found no change and wrote nothing: a key rotation of the merchant's
    webhooks left no trace of who did it or when. Now the roll writes an update record that says
    the secret was rolled and how long the previous one is kept, by the acting API key, under the
    endpoint's merchant — never the secret or its ciphertext."""
    from payera.audit.models import AuditLogEntry
    from payera.events.models import WebhookEndpoint

    merchant, client = make_merchant_client()
    created = client.post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/h", "enabled_events": ["*"]},
                          format="json").json()
    before = AuditLogEntry.objects.filter(object_pk=created["id"]).count()
    rolled = client.post(f"/v1/webhook_endpoints/{created['id']}/roll_secret", {"overlap_hours": 1}, format="json")
    assert rolled.status_code == 200
    client.post(f"/v1/webhook_endpoints/{created['id']}/roll_secret", {"overlap_hours": 0}, format="json")
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    records = list(AuditLogEntry.objects.filter(object_pk=created["id"]).order_by("id")[before:])
    assert [r.action for r in records] == [AuditLogEntry.Action.UPDATE] * 2
    assert all(r.api_key_id and r.object_merchant_id == merchant.pk for r in records)
    notes = [r.changes_dict["signing_secret"][1] for r in records]
    assert notes[0].startswith("rolled; previous kept until ") and notes[1] == "rolled; previous revoked at once"
    text = " ".join(str(r.changes) for r in records)
    for secret in (created["secret"], rolled.json()["secret"], endpoint.secret_ciphertext):
        assert secret not in text
    assert "whsec_" not in text and "local:" not in text
