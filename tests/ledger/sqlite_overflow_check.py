"""Run by tests/ledger/test_posting_overflow.py in a subprocess on a fresh SQLite file (the embedded
default): postings past the 64-bit range are refused as `overflow` there too
(tests/ledger/overflow_check.py). Prints OK or raises."""

import os
import sys

import django

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

assert connection.vendor == "sqlite", connection.vendor
call_command("migrate", verbosity=0)

from tests.ledger.overflow_check import (  # noqa: E402
    check_a_hot_account_has_no_single_version,
    check_a_posting_past_bigint_is_refused_as_overflow,
)

check_a_posting_past_bigint_is_refused_as_overflow()
check_a_hot_account_has_no_single_version()
print("OK")
