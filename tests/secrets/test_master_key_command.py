"""`manage.py secrets_new_master_key [--id ID]`: prints one LOCAL_MASTER_KEYS entry (id:base64)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command


def test_it_prints_a_new_entry_under_the_given_id():
    out = StringIO()
    call_command("secrets_new_master_key", "--id", "m2026", stdout=out)
    key_id, key = out.getvalue().strip().split(":")
    assert key_id == "m2026" and len(key) >= 43


@pytest.mark.parametrize("bad", ["bad:id", "x" * 33, "spa ce"])
def test_a_bad_key_id_is_a_clear_error_not_a_traceback(bad):
    """A bad `--id` raised ValueError out of the command: a traceback instead of the rule."""
    with pytest.raises(CommandError, match="master key ids are 1-32 characters"):
        call_command("secrets_new_master_key", "--id", bad, stdout=StringIO())
