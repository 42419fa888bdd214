"""`make test` says which service is down and how to start it, instead of a wall of errors."""

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]



def run(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/check_services.py"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_names_the_unreachable_service_and_how_to_start_it():
    result = run(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/test",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert result.returncode == 1
    assert "PostgreSQL is not reachable" in result.stderr and "pg_ctlcluster" in result.stderr
    assert "Redis" not in result.stderr
    result = run(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    assert result.returncode == 1 and "Redis is not reachable" in result.stderr and "redis-server" in result.stderr


def test_silent_when_both_answer():
    result = run(DATABASE_URL="postgres://postgres@127.0.0.1:5432/test", REDIS_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 0 and result.stderr == ""
