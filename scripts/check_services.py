"""Say clearly which service the test suite needs is not reachable, and how to start it."""

import os
import socket
import sys
from urllib.parse import urlparse

HINTS = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    db = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    redis = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    missing = []
    if db.scheme.startswith("postgres") and not reachable(db.hostname or "127.0.0.1", db.port or 5432):
        missing.append(("PostgreSQL", f"{db.hostname}:{db.port or 5432}"))
    if redis.scheme.startswith("redis") and not reachable(redis.hostname or "127.0.0.1", redis.port or 6379):
        missing.append(("Redis", f"{redis.hostname}:{redis.port or 6379}"))
    for name, where in missing:
        print(f"{name} is not reachable at {where}. Start it, e.g.: {HINTS[name]}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
