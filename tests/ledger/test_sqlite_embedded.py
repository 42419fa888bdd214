"""The ledger on the embedded default (SQLite), in a subprocess with its own fresh database."""

from tests.ledger.conftest import sqlite_check_ok


def test_ledger_rules_hold_on_sqlite(tmp_path):
    sqlite_check_ok("sqlite_embedded_check.py", tmp_path)
