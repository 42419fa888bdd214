"""`python -m bench`: run every benchmark suite (today: the ledger's)."""

from bench.ledger.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
