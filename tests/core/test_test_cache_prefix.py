"""Each xdist worker of a test run, and each test run, has a cache namespace of its own.

What was wrong: payera/settings/test.py set `CACHE_KEY_PREFIX` with `os.environ.setdefault(...,
"payera-test-" + PYTEST_XDIST_WORKER)`. pytest-django imports the settings in xdist's controller
process first (no worker id there: "payera-test-main"), and the workers inherit its environment,
so the setdefault kept "payera-test-main" in every worker: both workers of `make test -n 2` shared
one namespace on one Redis db. Every test's setup closes the circuits (tests/conftest.py
`_closed_circuits` deletes alpha's, beta's and zeta's failure counters and open flags), so the
other worker's setup could fall between two of the three failures of
tests/payments/test_payment_services.py::test_circuit_opens_after_repeated_technical_failures
(or between the third and the check) and it found no open circuit: the one-time CI failure. A
circuit opened by one worker's alpha timeouts could likewise reroute the other worker's
payments. Two runs on the same Redis db (CI and someone's run with the default REDIS_URL) shared
the same names too. Now the prefix names the run (an id the controller draws and its workers and
their subprocesses inherit) and the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A worker: its cache prefix, and its subprocess's (a live server, a sandbox) with its environment.
WORKER = """
import os, subprocess, sys
import payera.settings.test as s
probe = "import payera.settings.test as s; print(s.CACHES['default']['KEY_PREFIX'])"
child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
print(s.CACHES["default"]["KEY_PREFIX"], child)
"""

# What pytest does with -n 2: its controller imports the test settings (pytest-django), then starts
# the workers with its environment and PYTEST_XDIST_WORKER.
RUN = f"""
import json, os, subprocess, sys
import payera.settings.test

workers = {{}}
for worker in ("gw0", "gw1"):
    env = {{**os.environ, "PYTEST_XDIST_WORKER": worker}}
    workers[worker] = subprocess.run([sys.executable, "-c", {WORKER!r}], env=env, capture_output=True,
                                     text=True, check=True).stdout.split()
print(json.dumps(workers))
"""


def a_test_run() -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PAYERA_TEST_RUN"))}
    env.pop("CACHE_KEY_PREFIX", None)
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    done = subprocess.run([sys.executable, "-c", RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # {"gw0": [prefix, its subprocess's prefix], "gw1": [...]}


def test_each_xdist_worker_and_each_run_has_its_own_cache_namespace():
    first, second = a_test_run(), a_test_run()
    (gw0, gw0_child), (gw1, gw1_child) = first["gw0"], first["gw1"]
    assert gw0 != gw1
    # a worker's subprocesses (live servers, sandboxes) share their worker's namespace
    assert (gw0_child, gw1_child) == (gw0, gw1)
    # another run at the same time on the same Redis db (CI, someone's `make test`) shares nothing
    assert not {gw0, gw1} & {prefix for pair in second.values() for prefix in pair}
