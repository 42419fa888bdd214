"""Load-run settings: Payera's served settings (everything else from the environment) with
short PSP timeouts and a recovery schedule measured in seconds instead of minutes, so that a
run of a few minutes sees unknown outcomes resolved within it (docs/reliability.md)."""

import os

from payera.settings.base import *  # noqa: F403

_read_timeout = float(os.environ.get("LOAD_PSP_READ_TIMEOUT", "1.5"))
PSP_CONNECTORS = {
    psp: {
        "ADAPTER": f"psp_adapters.{psp}.{psp.capitalize()}Adapter",
        "OPTIONS": {"base_url": url, "read_timeout": _read_timeout, "connect_timeout": 1.0},
    }
    for psp, url in (("alpha", SANDBOX_ALPHA_URL), ("beta", SANDBOX_BETA_URL))  # noqa: F405
}
PAYMENTS_INFLIGHT_TIMEOUT = 10
IDEMPOTENCY_LOCK_TIMEOUT = 15
PAYMENTS_STARTED_GRACE_SECONDS = 3
PAYMENTS_PENDING_INQUIRY_SECONDS = 5
PAYMENTS_RECOVERY_SCHEDULE = [3, 6, 10, 20]
PAYMENTS_RECOVERY_MAX_INQUIRIES = 50
CELERY_BEAT_SCHEDULE["payments-recovery"]["schedule"] = 5.0  # noqa: F405
CELERY_BEAT_SCHEDULE["payments-psp-webhook-sweep"]["schedule"] = 5.0  # noqa: F405
