"""Run in a subprocess by test_log_masking: configures Django's real LOGGING and sends card
numbers, CVCs, bearer tokens and secrets through several loggers and paths."""

import logging
import os
import sys
import warnings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.test")
import django  # noqa: E402

django.setup()

from django.test import Client  # noqa: E402

PAN = "4242424242424242"
PAN_SPACED = "4000 0000 0000 0002"
TOKEN = "sk_test_" + "Q" * 40
SECRET = "whsec_" + "W" * 32

logging.getLogger("payera.payments").info("charging card %s with cvc %s", PAN, "cvc=737")
logging.getLogger("some.third.party").warning("request body: %s", '{"number": "' + PAN_SPACED + '", "cvc": "123"}')
logging.getLogger("celery.app.trace").error("task failed", extra={"headers": {"Authorization": f"Bearer {TOKEN}"}})
logging.getLogger("django.request").error("outbound header Authorization: Bearer %s", TOKEN)
logging.getLogger().info("endpoint secret %s", SECRET, extra={"payload": {"card": {"number": PAN, "cvc": "999"}}})
try:
    raise ValueError(f"declined for {PAN}")
except ValueError:
    logging.getLogger("payera.api").exception("unhandled")
logging.captureWarnings(True)
warnings.warn(f"card {PAN} seen in a warning", stacklevel=1)
# A real request: the body carries a PAN and the header a key; the 404 path logs through django.request.
client = Client(raise_request_exception=False)
client.post(
    f"/v1/not-here/{PAN}",
    data={"number": PAN, "cvc": "321"},
    content_type="application/json",
    HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
)
print("done", file=sys.stdout)
