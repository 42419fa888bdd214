"""Staff sign-in: username, password and the code of their TOTP device, in one form.

A wrong, missing or unusable second factor (after a right password) is a failed sign-in like a
wrong password: it counts towards the lockout (django-axes: 10 failures, 30 minutes) and is stored
in the audit trail with its reason. Wrong passwords reach both through Django's
`user_login_failed` signal. The page gives the same answer to every failure, so it never
confirms a password without its code.
"""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django import forms
from django.core.exceptions import ValidationError
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.plugins.otp_totp.models import TOTPDevice

from payera.audit.middleware import client_ip
from payera.audit.services import record_auth_failure

SIGN_IN_REFUSED = (
    "Please enter the correct username, password and authenticator code of a staff account. "
    "All three are case-sensitive; an account without an authenticator device needs one from an administrator."
)

# django-otp error code -> reason stored in the audit trail.
OTP_FAILURE_REASONS = {
    "token_required": "otp_missing",
    "invalid_token": "otp_invalid",
    "device_required": "otp_no_device",
    "invalid_login": "not_staff",  # right password, but not an active staff account
}


class StaffAuthenticationForm(OTPAdminAuthenticationForm):
    otp_token = forms.CharField(
        required=False,
        label="Authenticator code",
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def _chosen_device(self, user):
        # Staff have one TOTP device; choose it rather than ask (the chosen id is still checked
        # to belong to this user by django-otp).
        return super()._chosen_device(user) or TOTPDevice.objects.devices_for_user(user, confirmed=True).first()

    def _update_form(self, user):
        pass  # no device picker or challenge button: TOTP only

    def clean(self):
        try:
            return super().clean()
        except ValidationError as exc:
            user = self.user_cache
            if user is not None:  # the password was right: the second factor failed
                self._second_factor_failed(user, getattr(exc, "code", None))
            # One answer for every failure: the page never tells that the password was right.
            raise ValidationError(SIGN_IN_REFUSED, code="invalid_login") from None

    def _second_factor_failed(self, user, code: str | None) -> None:
        reason = OTP_FAILURE_REASONS.get(code or "", "otp_refused")
        username = user.get_username()
        record_auth_failure(
            kind="staff_login",
            identifier=username,
            reason=reason,
            remote_addr=client_ip(self.request) if self.request is not None else None,
            request_id=getattr(self.request, "request_id", None),
        )
        if self.request is not None:
            AxesProxyHandler.user_login_failed(
                sender=type(self), credentials={"username": username}, request=self.request
            )
