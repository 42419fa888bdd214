"""The web process's gunicorn settings: one file for the image (Dockerfile), `make run`
(`run_all`) and the payments benchmark (`python -m bench.payments`), so the figures in
docs/benchmarks.md are those of the documented deployment (docs/deploy.md, "Web processes").

- `workers`: one process per core the web tier gets (`WEB_CONCURRENCY`, gunicorn's own variable;
  default: this machine's cores). More processes than cores cost CPU per request (each with its own
  PostgreSQL connections and caches) without adding capacity.
- `threads`: payments a worker carries at once (`WEB_THREADS`, default 4). A thread waits out each
  PSP call, so size `workers × threads` for the payments in flight — rate × the PSP's latency (e.g.
  150/s × 0.3 s = 45 on the tier) — not for the cores.
- gthread workers (threads need them); keep-alive for clients that reuse their connection.
Anything here can be overridden on the command line (`--workers`, `--threads`, ...).
"""

import os


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    number = int(value)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return number


workers = _positive_int("WEB_CONCURRENCY", os.cpu_count() or 1)
threads = _positive_int("WEB_THREADS", 4)
worker_class = "gthread"
keepalive = 5
