"""Run by tests/ledger/test_hot_fold_overflow.py in a subprocess on a fresh SQLite file (the embedded
default): tests/ledger/hot_fold_check.py. Prints OK or raises."""


from tests.ledger.sqlite_script import setup

setup()



from tests.ledger.hot_fold_check import check_a_hot_balance_past_64_bits_is_read_exactly  # noqa: E402

check_a_hot_balance_past_64_bits_is_read_exactly()
print("OK")
