"""`python -m psp_adapters.sandbox {alpha,beta} --port N --data-dir DIR [options]`.

Credentials, first found wins: `--api-key` / `--webhook-secret`; `--credentials-file` (JSON
`{"api_key", "webhook_secret"}`, what the launcher writes); the environment variables
`SANDBOX_ALPHA_API_KEY`, `SANDBOX_ALPHA_WEBHOOK_SECRET` (`BETA` likewise); the development
values of docs/sandbox.md. Prints `<psp> sandbox listening on <url>` once ready
(with `--port 0` the OS picks the port; read it from that line).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from psp_adapters.sandbox.core import Core, Options
from psp_adapters.sandbox.server import SandboxServer
from psp_adapters.sandbox.store import Store, db_path

DEV_CREDENTIALS = {
    "alpha": ("alpha_test_key", "alpha_whsec_dev"),
    "beta": ("beta_test_key", "beta_whsec_dev"),
}


def build(argv: list[str] | None = None) -> tuple[SandboxServer, Core]:
    p = argparse.ArgumentParser(prog="python -m psp_adapters.sandbox", description="Run a sandbox PSP.")
    p.add_argument("psp", choices=["alpha", "beta"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--api-key", default=None)
    p.add_argument("--webhook-secret", default=None)
    p.add_argument("--credentials-file", default=None, help='JSON {"api_key", "webhook_secret"}')
    p.add_argument(
        "--webhook-url", default="", help="where webhooks are POSTed (may be set later: PUT /_sandbox/config)"
    )
    p.add_argument("--public-url", default="", help="base URL of the 3-D Secure / bank pages (default: the listen URL)")
    p.add_argument("--hold-seconds", type=float, default=30.0, help="alpha's slow card holds its answer this long")
    p.add_argument("--processing-delay", type=float, default=0.05, help="beta: seconds from received to outcome")
    p.add_argument("--dispute-delay", type=float, default=2.0)
    p.add_argument("--evidence-days", type=float, default=7.0, help="days a dispute takes the merchant's evidence")
    p.add_argument("--refund-failure-delay", type=float, default=0.5)
    p.add_argument("--sepa-delay", type=float, default=0.5)
    p.add_argument("--return-delay", type=float, default=2.0)
    p.add_argument("--webhook-max-attempts", type=int, default=12)
    p.add_argument("--webhook-backoff", type=float, default=0.5)
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the launching process dies")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)

    env = a.psp.upper()
    dev_key, dev_secret = DEV_CREDENTIALS[a.psp]
    from_file: dict[str, str] = {}
    if a.credentials_file:
        with open(a.credentials_file) as fh:
            from_file = json.load(fh)
    opts = Options(
        psp=a.psp,
        api_key=a.api_key or from_file.get("api_key") or os.environ.get(f"SANDBOX_{env}_API_KEY") or dev_key,
        webhook_secret=a.webhook_secret
        or from_file.get("webhook_secret")
        or os.environ.get(f"SANDBOX_{env}_WEBHOOK_SECRET")
        or dev_secret,
        webhook_url=a.webhook_url,
        public_url=a.public_url.rstrip("/"),
        hold_seconds=a.hold_seconds,
        processing_delay=a.processing_delay,
        dispute_delay=a.dispute_delay,
        evidence_days=a.evidence_days,
        refund_failure_delay=a.refund_failure_delay,
        sepa_delay=a.sepa_delay,
        return_delay=a.return_delay,
        webhook_max_attempts=a.webhook_max_attempts,
        webhook_backoff=a.webhook_backoff,
    )
    if a.psp == "alpha":
        from psp_adapters.sandbox.alpha import AlphaWire as WireClass
    else:
        from psp_adapters.sandbox.beta import BetaWire as WireClass  # type: ignore[assignment]
    wire = WireClass()
    store = Store(db_path(a.data_dir, a.psp))
    core = Core(store, opts, wire)
    wire.core = core
    server = SandboxServer((a.host, a.port), core, wire.routes(), verbose=a.verbose)
    if not opts.public_url:
        opts.public_url = f"http://{a.host}:{server.server_address[1]}"
    server.exit_with_parent = a.exit_with_parent
    return server, core


def _watch_parent(server: SandboxServer) -> None:
    """No orphans: a test run killed with SIGKILL must not leave sandboxes behind."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server, core = build(argv)
    core.start()

    def shutdown(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    if server.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(server,), daemon=True).start()
    host = server.server_address[0]
    port = server.server_address[1]
    print(f"{core.psp} sandbox listening on http://{host!s}:{port}", flush=True)  # noqa: T201
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        core.stop()
        server.server_close()
        core.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
