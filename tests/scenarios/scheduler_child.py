"""Scheduler child (test-only): one process running `manage.py run_subscriptions --now …` against
the test database and the sandbox PSPs, started at the same wall-clock instant as its twin.

    python -m tests.scenarios.scheduler_child '<json config>'

Config: database_url, connectors (settings.PSP_CONNECTORS), credentials ({psp: {api_key,
webhook_secret}}), now (ISO 8601: the simulated clock), go_at (unix seconds to start at).
"""

from __future__ import annotations

import json
import os
import sys
import time

CFG = json.loads(sys.argv[1])
os.environ["DATABASE_URL"] = CFG["database_url"]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

settings.PSP_CONNECTORS = CFG["connectors"]
settings.SECRETS_BACKEND = "memory"  # charged with the PSP's token: no card number to decrypt

from django.core.management import call_command  # noqa: E402

from payera.secrets.services import secret_put  # noqa: E402
from psp_adapters.registry import adapters_reset  # noqa: E402

for psp, creds in CFG["credentials"].items():
    secret_put(f"psp/{psp}", creds)
adapters_reset()

time.sleep(max(0.0, CFG["go_at"] - time.time()))
call_command("run_subscriptions", "--now", CFG["now"])
