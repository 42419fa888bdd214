import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.services import account_get_or_create
from ledger.types import AccountKey, AccountType


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def owner() -> str:
    return "mer_" + uuid.uuid4().hex[:20]


def make_account(owner: str, code: str, currency: str = "EUR", **flags) -> AccountKey:
    key = AccountKey(owner, code, currency)
    account_get_or_create(key=key, type=flags.pop("type", AccountType.ASSET), **flags)
    return key


def run_on_fresh_sqlite(script: str, tmp: Path, *, timeout: int) -> str:
    """Run tests/ledger/`script` in a subprocess on a fresh SQLite file in `tmp` (the embedded
    default, migrated by the script); assert it exited 0 and return its stdout."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{tmp}/payera.sqlite3",
        REDIS_URL="",
        PAYERA_VAR_DIR=str(tmp),
        DJANGO_SETTINGS_MODULE="payera.settings.base",
        LOG_LEVEL="WARNING",
    )
    root = Path(__file__).resolve().parents[2]
    assert Path(__file__).with_name(script).is_file(), script
    # as a module of the tests package (tests/ledger/sqlite_script.py sets Django up)
    module = f"tests.ledger.{Path(script).stem}"
    proc = subprocess.run([sys.executable, "-m", module], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def sqlite_check_ok(script: str, tmp: Path, *, timeout: int = 300) -> None:
    """run_on_fresh_sqlite for a script that prints OK or raises."""
    out = run_on_fresh_sqlite(script, tmp, timeout=timeout)
    assert out.strip().endswith("OK"), out[-3000:]


def sqlite_case_results(script: str, tmp: Path, *, timeout: int) -> dict[str, str]:
    """run_on_fresh_sqlite for a script that reports its cases as one JSON object on its last line,
    {case: "ok" or the end of its traceback} (tests/ledger/sqlite_script.py outcome())."""
    return json.loads(run_on_fresh_sqlite(script, tmp, timeout=timeout).strip().splitlines()[-1])
