"""System checks: a misconfigured secrets backend stops the process at start, not at the first
payment."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured


@register("security", deploy=False)
def check_secrets_backend(app_configs=None, **kwargs):
    backend = settings.SECRETS_BACKEND
    problems = []
    if backend == "local":
        from payera.secrets.backends.local import parse_master_keys

        try:
            parse_master_keys(settings.LOCAL_MASTER_KEYS, production=settings.PRODUCTION)
        except ImproperlyConfigured as exc:
            problems.append(Error(str(exc), id="payera.secrets.E001"))
    elif backend == "vault":
        if not settings.VAULT_ADDR:
            problems.append(Error("SECRETS_BACKEND=vault needs VAULT_ADDR", id="payera.secrets.E002"))
        if not (settings.VAULT_TOKEN or (settings.VAULT_ROLE_ID and settings.VAULT_SECRET_ID)):
            message = "SECRETS_BACKEND=vault needs VAULT_ROLE_ID + VAULT_SECRET_ID or VAULT_TOKEN"
            problems.append(Error(message, id="payera.secrets.E003"))
    elif backend == "memory" and settings.PRODUCTION:
        problems.append(Error("SECRETS_BACKEND=memory is for tests only", id="payera.secrets.E004"))
    return problems


@register("security", deploy=True)
def check_dev_master_key(app_configs=None, **kwargs):
    """`manage.py check --deploy`: the public dev master key protects nothing."""
    # (In production a missing master key is already the error E001.)
    unset = not (settings.LOCAL_MASTER_KEYS or "").strip()
    if settings.SECRETS_BACKEND == "local" and unset and not settings.PRODUCTION:
        return [
            Warning(
                "The local secrets backend uses the public dev master key; set LOCAL_MASTER_KEYS.",
                id="payera.secrets.W001",
            )
        ]
    return []
