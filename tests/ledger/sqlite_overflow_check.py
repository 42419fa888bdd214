"""Run by tests/ledger/test_posting_overflow.py in a subprocess on a fresh SQLite file (the embedded
default): postings past the 64-bit range are refused as `overflow` there too
(tests/ledger/overflow_check.py). Prints OK or raises."""


from tests.ledger.sqlite_script import setup

setup()



from tests.ledger.overflow_check import (  # noqa: E402
    check_a_hot_account_has_no_single_version,
    check_a_posting_past_bigint_is_refused_as_overflow,
)

check_a_posting_past_bigint_is_refused_as_overflow()
check_a_hot_account_has_no_single_version()
print("OK")
