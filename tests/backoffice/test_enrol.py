"""Enrolling a staff member's TOTP device (manage.py staff_otp_enrol)."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.backoffice.staff import PASSWORD, make_staff, totp_token

pytestmark = pytest.mark.django_db


def enrol(*args) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("staff_otp_enrol", *args, stdout=out)
    return json.loads(out.getvalue())


def test_enrol_prints_the_otpauth_url_once_and_the_code_signs_in(client, django_user_model):
    django_user_model.objects.create_user("lee", "lee@payera.test", PASSWORD, is_staff=True)
    answer = enrol("lee")
    assert answer["config_url"].startswith("otpauth://totp/") and "Payera" in answer["config_url"]
    device = TOTPDevice.objects.get(pk=answer["device_id"])
    response = client.post("/admin/login/?next=/admin/", {
        "username": "lee", "password": PASSWORD, "otp_token": totp_token(device),
    })
    assert response.status_code == 302


def test_enrol_refuses_a_second_device_unless_replacing(db):
    user = make_staff("lee")
    old = TOTPDevice.objects.get(user=user)
    with pytest.raises(CommandError, match="already has a device"):
        enrol("lee")
    answer = enrol("lee", "--replace")
    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True)) == [answer["device_id"]]
    assert answer["device_id"] != old.pk


def test_enrolment_and_removal_are_audited_without_the_key(db):
    from django.contrib.contenttypes.models import ContentType

    from payera.audit.models import AuditLogEntry

    make_staff("lee")
    answer = enrol("lee", "--replace")
    device = TOTPDevice.objects.get(pk=answer["device_id"])
    records = AuditLogEntry.objects.filter(content_type=ContentType.objects.get_for_model(TOTPDevice))
    assert records.filter(action=AuditLogEntry.Action.CREATE, object_pk=str(device.pk)).exists()
    assert records.filter(action=AuditLogEntry.Action.DELETE).count() == 1  # the replaced device
    assert device.key not in str(list(records.values()))
    device.throttle_increment()  # what a wrong code does: not an audit record
    assert records.filter(action=AuditLogEntry.Action.UPDATE).count() == 0


def test_enrol_refuses_non_staff_and_unknown_accounts(django_user_model):
    django_user_model.objects.create_user("customer", "c@payera.test", PASSWORD)
    for username in ("customer", "ghost"):
        with pytest.raises(CommandError, match="no active staff account"):
            enrol(username)


def test_the_device_admin_never_shows_the_key(client, superuser):
    from tests.backoffice.staff import otp_force_login, totp_device

    device = totp_device(superuser)
    otp_force_login(client, superuser)
    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
    assert page.status_code == 200 and device.key.encode() not in page.content
    assert b"otpauth" not in page.content and b"qrcode" not in page.content.lower()
    assert client.get("/admin/otp_totp/totpdevice/add/").status_code == 403
