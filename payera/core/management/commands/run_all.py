"""`make run`: the whole system on one machine — web, task worker, scheduler, sandbox PSPs.

Migrates, collects static files, makes sure the demo merchant exists, prints its API key and a
ready `curl` line, then supervises the processes: Ctrl-C (or any child dying) stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import BaseCommand, call_command
from django.utils.module_loading import import_string

DEMO_MERCHANT = "Demo Shop"


class Command(BaseCommand):
    help = "Run web, worker, scheduler and sandbox PSPs together (the embedded default)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, port: int, host: str, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        procs: list[tuple[str, subprocess.Popen]] = []
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
        python = sys.executable
        try:
            procs += self._start_extra_processes(env)
            procs.append(
                (
                    "web",
                    subprocess.Popen(
                        [
                            python, "-m", "gunicorn", "payera.wsgi:application",
                            "-c", str(settings.BASE_DIR / "gunicorn.conf.py"),  # the deployment's workers, threads
                            "--bind", f"{host}:{port}",
                            "--access-logfile", "-", "--graceful-timeout", "5",
                        ],
                        env=env,
                    ),
                )
            )
            procs.append(
                (
                    "worker",
                    subprocess.Popen(
                        [python, "-m", "celery", "-A", "payera", "worker", "--pool=threads",
                         "--concurrency=4", "--loglevel=INFO", "--without-gossip", "--without-mingle"],
                        env=env,
                    ),
                )
            )
            beat_file = Path(settings.VAR_DIR) / "celerybeat-schedule"
            procs.append(
                (
                    "scheduler",
                    subprocess.Popen(
                        [python, "-m", "celery", "-A", "payera", "beat", "--loglevel=INFO", "-s", str(beat_file)],
                        env=env,
                    ),
                )
            )
            self._print_welcome(host, port)
            self._supervise(procs)
        finally:
            self._stop(procs)

    # --- pieces -------------------------------------------------------------------------
    def _start_extra_processes(self, env: dict) -> list[tuple[str, subprocess.Popen]]:
        """The processes settings.RUN_ALL_EXTRA_PROCESSES names (the sandbox PSPs), by dotted
        path, so the platform knows no domain app."""
        procs: list[tuple[str, subprocess.Popen]] = []
        for path in getattr(settings, "RUN_ALL_EXTRA_PROCESSES", []):
            commands = import_string(path)(python=sys.executable)
            procs += [(name, subprocess.Popen(cmd, env=env)) for name, cmd in commands.items()]
        return procs

    def _print_welcome(self, host: str, port: int) -> None:
        base = f"http://{host}:{port}"
        key = self._demo_key()
        self.stdout.write(self.style.SUCCESS(f"\nPayera is running at {base}  (API docs: {base}/v1/docs/)"))
        if key:
            self.stdout.write(f"Demo merchant: {key['merchant']}\nAPI key:       {key['api_key']}\n")
            self.stdout.write(
                "Try it:\n"
                f"  curl -s {base}/v1/payments -H 'Authorization: Bearer {key['api_key']}' "
                "-H 'Content-Type: application/json' -H \"Idempotency-Key: $(date +%s%N)\" "
                "-d '{\"amount\": 1000, \"currency\": \"EUR\", \"payment_method_data\": {\"type\": \"card\", "
                "\"card\": {\"number\": \"4242424242424242\", \"exp_month\": 12, \"exp_year\": 2030, "
                "\"cvc\": \"123\"}}}'\n"
            )
        self.stdout.write("Press Ctrl-C to stop everything.\n")
        self.stdout.flush()

    def _demo_key(self) -> dict | None:
        """The demo merchant's key, created once and kept in var/ so every `make run` shows it.
        A kept key is shown again only while it still opens the API: one of another database (the
        file outlived a reset, or DATABASE_URL changed) makes a new demo merchant, a revoked or
        expired one a new key of the same merchant, so the printed `curl` line works."""
        from io import StringIO

        path = Path(settings.VAR_DIR) / "demo-merchant.json"
        kept = self._read_kept(path)
        if kept is not None and self._key_works(kept):
            return kept
        out = StringIO()
        try:
            if kept is not None and self._merchant_exists(kept["merchant"]):
                call_command("api_key_create", kept["merchant"], name="demo", json=True, stdout=out)
            else:
                call_command("create_merchant", DEMO_MERCHANT, connectors="alpha,beta", json=True, stdout=out)
        except Exception as exc:  # the merchants app may not offer the command yet
            self.stderr.write(f"could not create the demo merchant: {exc}")
            return None
        made = json.loads(out.getvalue())
        data = {"merchant": made["merchant"], "api_key": made["api_key"]}
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        return data

    @staticmethod
    def _read_kept(path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("merchant", "api_key"))
        return data if ok else None

    @staticmethod
    def _merchant_exists(merchant_id: str) -> bool:
        from django.apps import apps

        return apps.get_model(settings.STAFF_MERCHANT_MODEL).objects.filter(pk=merchant_id).exists()

    @staticmethod
    def _key_works(kept: dict) -> bool:
        """Whether the kept key is this database's, live, of the kept merchant (the API's own rule
        finds it by its prefix and hash)."""
        from django.utils import timezone

        from payera.merchants.selectors import api_key_find_by_secret

        key = api_key_find_by_secret(raw_key=kept["api_key"])
        return (key is not None and key.merchant_id == kept["merchant"] and key.revoked_at is None
                and (key.expires_at is None or key.expires_at > timezone.now()))

    def _supervise(self, procs: list[tuple[str, subprocess.Popen]]) -> None:
        stop = {"now": False}

        def _signal(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGINT, _signal)
        signal.signal(signal.SIGTERM, _signal)
        while not stop["now"]:
            for name, proc in procs:
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping everything")
                    return
            time.sleep(0.5)
        self.stdout.write("\nStopping ...")

    def _stop(self, procs: list[tuple[str, subprocess.Popen]]) -> None:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for _, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
