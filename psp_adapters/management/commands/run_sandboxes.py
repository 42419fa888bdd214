"""`manage.py run_sandboxes [--psp alpha,beta] [--webhook-base-url URL]`: run the sandbox PSPs
in the foreground (as `make run` does): ports from SANDBOX_ALPHA_URL / SANDBOX_BETA_URL, state in
SANDBOX_DATA_DIR, credentials shared with the adapters via the secrets backend."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from psp_adapters.sandbox import PSPS
from psp_adapters.sandbox.launcher import sandbox_commands


class Command(BaseCommand):
    help = "Run the sandbox PSPs (alpha, beta) until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--psp", default=",".join(PSPS), help="comma-separated: alpha,beta")
        parser.add_argument(
            "--webhook-base-url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
            help="Payera's base URL; webhooks go to <base>/webhooks/psp/<psp>/",
        )

    def handle(self, *args: object, psp: str, webhook_base_url: str, **options: object) -> None:
        names = tuple(p.strip() for p in psp.split(",") if p.strip())
        unknown = set(names) - set(PSPS)
        if unknown:
            raise CommandError(f"unknown sandbox(es): {', '.join(sorted(unknown))}")
        commands = sandbox_commands(webhook_base_url=webhook_base_url, psps=names)
        procs = [subprocess.Popen(cmd) for cmd in commands.values()]
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not stopping and all(p.poll() is None for p in procs):
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except Exception:
                    p.kill()
        failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
        if failed and not stopping:
            raise CommandError(f"a sandbox exited with {failed}")
