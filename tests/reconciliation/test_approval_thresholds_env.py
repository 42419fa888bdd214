"""`RECONCILIATION_APPROVAL_THRESHOLDS` from the environment (docs/reconciliation.md, "Four eyes"):
what does not say one threshold per currency stops the start with a clear message naming the
variable; nothing is silently dropped or defaulted.

Before: `*=0` (the fallback entry of the other per-currency tables, meant as "every currency needs a
second user") was overwritten by `RECONCILIATION_APPROVAL_THRESHOLD` and the checks passed: 1,000.00
EUR moved by one user; `jpy=5,JPY=7` kept 7 without a word; `JPY` (or `JPY=--5`) stopped the start
with a bare ValueError of django-environ (or int()) that named no setting."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings as django_settings

CODE = (
    "import django; django.setup(); from django.conf import settings as s; from django.core import checks;"
    " print(s.{name});"
    " print(sorted(m.id for m in checks.run_checks() if m.id.startswith('reconciliation.')))"
)


def start(value: str, name: str = "RECONCILIATION_APPROVAL_THRESHOLDS") -> subprocess.CompletedProcess:
    """A process started with `name=value` in its environment: it prints the setting, then the
    reconciliation checks' ids (or stops, its stderr says why)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "payera.settings.test", "DATABASE_URL": "sqlite:///:memory:",
           name: value}  # fmt: skip
    return subprocess.run([sys.executable, "-c", CODE.format(name=name)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=django_settings.BASE_DIR)  # fmt: skip


def test_what_is_not_one_threshold_per_currency_stops_the_start_naming_the_variable():
    for value, says in (
        ("*=0", "RECONCILIATION_APPROVAL_THRESHOLD"),  # the fallback has its own variable
        ("jpy=5,JPY=7", "JPY twice"),
        ("JPY", "CODE=amount"),
    ):
        out = start(value)
        assert out.returncode != 0, (value, out.stdout)
        assert "ImproperlyConfigured" in out.stderr and "RECONCILIATION_APPROVAL_THRESHOLDS" in out.stderr, value
        assert says in out.stderr.splitlines()[-1], (value, out.stderr[-500:])


def test_a_well_formed_table_still_starts_and_the_checks_judge_its_codes_and_amounts():
    out = start(" JPY = 150000 , kwd=300000,")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-2:] == ["{'JPY': 150000, 'KWD': 300000}", "[]"]
    for value in ("XYZ=5", "JPY=-1", "JPY=1.5", "JPY=", "JPY=--5"):  # --5: int() stopped the start, naming nothing
        out = start(value)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "['reconciliation.E004']", value
