"""What a production process checks before it serves: the deploy checks tagged `runtime` (those
about the process's own connections, e.g. the ledger's database role, ledger/checks.py). `manage.py
check --deploy` runs them too; `migrate` (run as the database owner) does not run deploy checks.
Called by the web (payera/wsgi.py) and task workers (payera/celery.py) when DJANGO_ENV=production."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

RUNTIME_TAG = "runtime"


def refuse_unsafe_runtime() -> None:
    """Production only: raise ImproperlyConfigured if a runtime deploy check reports an error."""
    if not settings.PRODUCTION:
        return
    from django.core import checks
    from django.db import connections

    try:
        errors = [e for e in checks.run_checks(tags=[RUNTIME_TAG], include_deployment_checks=True) if e.is_serious()]
    finally:
        connections.close_all()  # not carried into forked workers
    if errors:
        raise ImproperlyConfigured(
            "Refusing to start in production: " + "; ".join(f"{e.id}: {e.msg} {e.hint or ''}".strip() for e in errors)
        )
