"""The ledger on the embedded default (SQLite), in a subprocess with its own fresh database."""

from tests.ledger.conftest import run_on_fresh_sqlite


def test_ledger_rules_hold_on_sqlite(tmp_path):
    out = run_on_fresh_sqlite("sqlite_embedded_check.py", tmp_path, timeout=300)
    assert out.strip().endswith("OK")
