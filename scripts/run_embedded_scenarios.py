"""Run the end-to-end scenario tests on the embedded default (SQLite, no Redis).

The money guarantees must hold there too (ARCHITECTURE "Running"), so CI runs the scenarios
twice: on PostgreSQL with the whole suite, and here on a fresh SQLite file. Arguments are passed
on to pytest (e.g. a test file, `-k name`, `-x`).
"""

import os
import subprocess
import sys
import tempfile

with tempfile.TemporaryDirectory(prefix="payera-embedded-") as tmp:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{tmp}/payera.sqlite3"
    env["REDIS_URL"] = ""
    env["PAYERA_VAR_DIR"] = tmp
    env["PAYERA_EMBEDDED_TEST"] = "1"
    args = ["-m", "scenario", "-p", "no:xdist", "-q", *sys.argv[1:]]
    code = subprocess.call([sys.executable, "-m", "pytest", *args], env=env)
    if code == 5:  # no scenario collected yet
        print("embedded scenarios: no scenario tests collected")
        code = 0
    sys.exit(code)
