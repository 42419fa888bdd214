"""Signing staff in to the back office from tests: the real rule (a TOTP device verified in the
session), so admin tests anywhere can use it instead of a bare `client.force_login`."""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "staff-password-long-enough-42"


def totp_device(user) -> TOTPDevice:
    """The user's TOTP device, enrolled if they have none."""
    device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="test phone", confirmed=True)


def totp_token(device: TOTPDevice, *, at: float | None = None) -> str:
    """The code the authenticator app shows now (or at unix time `at`)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() if at is None else at
    return f"{totp.token():0{device.digits}d}"


def otp_force_login(client, user):
    """`client.force_login(user)` plus what a real sign-in adds: the OTP device in the session."""
    device = totp_device(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def make_staff(username: str, *, role: str | None = None, superuser: bool = False, password: str = PASSWORD,
               **fields):
    """An active staff user in `role` (a group from payera.staff.roles), with a TOTP device."""
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser(username, f"{username}@payera.test", password, **fields)
    else:
        user = model.objects.create_user(username, f"{username}@payera.test", password, is_staff=True, **fields)
    if role:
        user.groups.add(Group.objects.get(name=role))
    totp_device(user)
    return user
