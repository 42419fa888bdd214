"""Run by tests/ledger/test_hot_fold_overflow.py in a subprocess on a fresh SQLite file (the embedded
default): tests/ledger/hot_fold_check.py. Prints OK or raises."""

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

from tests.ledger.hot_fold_check import check_a_hot_balance_past_64_bits_is_read_exactly  # noqa: E402

check_a_hot_balance_past_64_bits_is_read_exactly()
print("OK")
