"""Writes of the back office: TOTP devices of staff accounts."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from payera.core.errors import InvalidRequestError


class StaffOtpEnrolError(InvalidRequestError):
    code = "staff_otp_enrol_refused"


@dataclass(frozen=True, slots=True)
class EnrolledDevice:
    device_id: int
    username: str
    config_url: str  # otpauth://totp/... : show once (QR code or typed), never store or log it


@transaction.atomic(durable=True)
def staff_otp_device_enrol(
    *, username: str, device_name: str = "authenticator", replace: bool = False
) -> EnrolledDevice:
    """Give an active staff account its TOTP device (confirmed: the person gets the secret from
    the one who ran this, in person or over a secure channel). `replace` drops the old devices,
    e.g. a lost phone; without it an account that has a device is refused."""
    user = get_user_model().objects.select_for_update().filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None or not user.is_active or not user.is_staff:
        raise StaffOtpEnrolError(f"no active staff account {username!r}")
    existing = TOTPDevice.objects.devices_for_user(user, confirmed=None)
    if existing.exists():
        if not replace:
            raise StaffOtpEnrolError(f"{username!r} already has a device (use replace to swap it)")
        existing.delete()
    device = TOTPDevice.objects.create(user=user, name=device_name[:64], confirmed=True)
    return EnrolledDevice(device_id=device.pk, username=username, config_url=device.config_url)


# A staff action's reason (why: a ticket, the merchant's request): at least this many characters
# once trimmed, in the admin's ReasonForm and in the services that move money on a staff action.
REASON_MIN_LENGTH = 5


def staff_reason_check(reason: str | None) -> str:
    """The reason of a staff action that moves money or reveals accounts, trimmed; refused
    (`invalid_request_error` on `reason`) below REASON_MIN_LENGTH, whoever calls (the form too)."""
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN_LENGTH:
        raise InvalidRequestError(
            f"A reason of at least {REASON_MIN_LENGTH} characters is required (why: a ticket, the merchant's "
            "request).", param="reason")
    return reason


def staff_action_record(*, user, action: str, object_type: str, object_id: str, reason: str, outcome: str,
                        merchant_id: str = "", detail: str = ""):
    """One row of `StaffAction`: who did what to which object, why, and how it ended."""
    from payera.backoffice.models import StaffAction
    from payera.core.masking import mask_account_numbers, mask_text

    return StaffAction.objects.create(
        user=user, action=action[:64], object_type=object_type[:64], object_id=str(object_id)[:64],
        merchant_id=str(merchant_id or "")[:64], reason=mask_account_numbers(reason.strip()), outcome=outcome,
        detail=mask_text(detail)[:500],
    )
