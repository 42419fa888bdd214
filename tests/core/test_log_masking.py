"""Card numbers, CVCs, bearer tokens and secrets never reach the log output, whatever logger
they come through, and every line is JSON with a request id."""

import json
import os
import subprocess
import sys
from pathlib import Path

from payera.core.masking import luhn_valid, mask_text

SCRIPT = Path(__file__).parent / "scripts" / "emit_logs.py"
ROOT = Path(__file__).resolve().parents[2]


def run_script() -> str:
    env = dict(os.environ, LOG_LEVEL="INFO", LOG_JSON="true", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    return result.stderr


def test_secrets_never_reach_the_log_output():
    output = run_script()
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) >= 8, output
    for forbidden in ("4242424242424242", "4000 0000 0000 0002", "4000000000000002", "Q" * 40, "W" * 32):
        assert forbidden not in output
    for cvc in ('"123"', '"999"', '"321"', "cvc=737"):
        assert cvc not in output
    # What may stay: BIN and last 4, and the fact that something was masked.
    assert "424242******4242" in output
    assert "Bearer ***" in output and "whsec_***" in output


def test_every_line_is_json_with_a_request_id():
    output = run_script()
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all("request_id" in r and "level" in r and "logger" in r for r in records)
    request_lines = [r for r in records if r["logger"] == "django.request" and "Not Found" in r["message"]]
    assert request_lines and request_lines[0]["request_id"].startswith("req_")


def test_mask_text_keeps_non_card_numbers():
    assert mask_text("order 12345678901234 amount 1000") == "order 12345678901234 amount 1000"
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424241")
    assert mask_text("5555 5555 5555 4444") == "555555******4444"


def test_ibans_in_free_text_are_masked_like_a_pan_and_references_are_not():
    from payera.core.masking import mask_text

    assert mask_text("debit DE89370400440532013000 now") == "debit DE****************3000 now"
    assert mask_text("iban NL39 RABO 0300 0652 64 ok") == "iban NL************5264 ok"
    assert mask_text("at611904300234573201") == "AT**************3201"
    # ids and references that look alike but fail the checksum stay as they are
    assert mask_text("BP12ABCDEFGHIJKLMN NL39RABO0300065265") == "BP12ABCDEFGHIJKLMN NL39RABO0300065265"
