"""Back office (platform app): the staff admin site and how staff sign in to it.

- `sites.BackofficeAdminSite` is `django.contrib.admin.site` (installed through
  `apps.BackofficeAdminConfig`): every page needs an active staff user verified by a TOTP device
  in this session (django-otp); every admin of a merchant-owned model is limited to the staff
  member's merchants (`scoping`), whether or not its app remembered the mixin.
- `forms.StaffAuthenticationForm`: password and TOTP code in one step; a wrong code counts as a
  failed sign-in for the lockout (django-axes) and lands in the audit trail.
- `panels`: the dashboard on the admin index, a registry other apps add panels to.
- `services.staff_otp_device_enrol`: give a staff account its TOTP device (`manage.py staff_otp_enrol`).

Knows no domain app (payments, ledger, ...): they plug in through the admin registry and panels.
"""
