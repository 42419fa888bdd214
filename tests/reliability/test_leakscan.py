"""The secret-leak scan (tests/plugins/leakscan.py) fails a run when something leaks, and only then.

Each case runs pytest in a subprocess on a small test file, with the plugin loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.plugins.leakscan import find_leaks

ROOT = Path(__file__).resolve().parents[2]

RAW_HANDLER = """
import logging, sys

raw = logging.getLogger("leaky")
raw.propagate = False
handler = logging.StreamHandler(sys.stderr)  # no masking filter, no masking formatter
raw.addHandler(handler)
"""


def run_pytest(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.plugins.leakscan", "-p", "no:django",
         "-p", "no:cacheprovider", *args, "test_sample.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_key_logged_in_clear_fails_the_test_that_logged_it(tmp_path):
    result = run_pytest(
        tmp_path,
        RAW_HANDLER
        + """
def test_clean():
    raw.warning("nothing secret here: order 1234")

def test_leaks():
    raw.warning("calling PSP with key sk_test_abcdef123456")
""",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "FAILED test_sample.py::test_leaks" in result.stdout
    assert "Secret leaked into the log output during call" in result.stdout
    assert "api key" in result.stdout


LEAKING_LINES = [
    "card 4242 4242 4242 4242 declined",
    "card 4000-0000-0000-0002",
    "pan=4000.0000.0000.9995",
    '{"cvc": "737"}',
    "cvv=123",
    "signing with whsec_abcdefgh1234",
    "vault token hvs.CAESIJx2abcdefghijk",
    "live key sk_live_0123456789abc",
    "debiting DE89 3704 0044 0532 0130 00 now",
    "iban=nl39rabo0300065264",
    "mandate for AT61-1904-3002-3457-3201",
    "account GB82WEST12345698765432 (not a test IBAN: caught by shape and checksum)",
]


def test_each_kind_of_secret_is_caught(tmp_path):
    tests = (f"\ndef test_{i}():\n    raw.warning({line!r})\n" for i, line in enumerate(LEAKING_LINES))
    body = RAW_HANDLER + "".join(tests)
    result = run_pytest(tmp_path, body)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{len(LEAKING_LINES)} failed" in result.stdout, result.stdout


def test_masked_output_passes(tmp_path):
    # The same secrets through our masking formatter are not leaks.
    result = run_pytest(
        tmp_path,
        """
import logging, sys
from payera.core.logging import MaskingFilter, MaskingJsonFormatter

log = logging.getLogger("masked")
log.propagate = False
handler = logging.StreamHandler(sys.stderr)
handler.addFilter(MaskingFilter())
handler.setFormatter(MaskingJsonFormatter())
log.addHandler(handler)

def test_masked():
    log.warning("card 4242424242424242 cvc=737 key sk_test_abcdef123456 whsec_abcdefgh1234",
                extra={"payment": {"cvc": "123", "number": "4000000000000002"}})
""",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_leak_outside_any_test_fails_the_session(tmp_path):
    body = RAW_HANDLER + '\nraw.warning("at import: sk_test_abcdef123456")\n\ndef test_ok():\n    pass\n'
    result = run_pytest(tmp_path, body)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "LEAK outside any test" in result.stdout


def test_under_xdist_each_worker_checks_its_own(tmp_path):
    body = RAW_HANDLER + "".join(f"\ndef test_{i}():\n    pass\n" for i in range(6))
    body += '\ndef test_leaks():\n    raw.error("4242424242424242")\n'
    result = run_pytest(tmp_path, body, "-n", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 6 passed" in result.stdout


def test_under_xdist_a_leak_at_collection_fails_the_run(tmp_path):
    body = RAW_HANDLER + '\nraw.warning("at import: whsec_abcdefgh1234")\n'
    body += "".join(f"\ndef test_{i}():\n    pass\n" for i in range(4))
    result = run_pytest(tmp_path, body, "-n", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "LEAK outside any test" in result.stdout


def test_masked_forms_and_ordinary_numbers_are_not_leaks():
    assert find_leaks('card 424242******4242 "cvc": "***" sk_test_*** whsec_*** hvs.*** Bearer ***') == []
    assert find_leaks("amount 1000 order 1234567890123 ts 1763800000") == []  # not Luhn-valid
    # Found on the first suite-wide run: Celery logs a task's runtime as a float whose fraction
    # can pass the Luhn check. A float is not a card number.
    assert find_leaks('"runtime": 0.02153048900072463, "t": 1.02153048900072463') == []
    assert find_leaks("card 4242424242424242.") != []
