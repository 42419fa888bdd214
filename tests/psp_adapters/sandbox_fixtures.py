"""Pytest plugin: the sandbox PSPs as real subprocesses on free loopback ports.

Use it from any test package with `pytest_plugins = ["tests.psp_adapters.sandbox_fixtures"]`
(in a conftest.py). Fixtures:

- `psp_webhooks` (session): a local HTTP receiver both sandboxes POST their webhooks to;
  `psp_webhooks.wait_for(pred)` returns the first `ReceivedWebhook` matching `pred`.
- `sandboxes` (session): `{"alpha": SandboxProcess, "beta": SandboxProcess}`, started once per
  test session (per xdist worker), each with its own data dir, stopped at the end.
  `SandboxProcess` has `url`, `api_key`, `webhook_secret`, `data_dir`, `restart()`,
  `set_webhook_url(url)` (e.g. to Payera's `live_server` + `/webhooks/psp/beta/`),
  `events()` (what it sent and the delivery state), `resend(event_id)`, `payments(reference)` (what it holds: "one
  authorization, never two"), `reset()`, `submit_challenge(url, result)` (acts as the shopper).
- `psp_settings` (function): points `settings.PSP_CONNECTORS` and `SANDBOX_DATA_DIR` at the
  running sandboxes with short timeouts, writes their credentials to the configured secrets
  backend at `psp/alpha` and `psp/beta` (the `local` backend keeps them in the database, so the
  test needs `db`; or set `settings.SECRETS_BACKEND = "memory"` first), and resets the adapter
  registry. Returns the sandboxes.

Timings are shortened for tests: alpha's slow card holds 3 s against a 1.5 s adapter read
timeout; disputes and SEPA returns arrive after 0.5 s.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import psp_adapters
from psp_adapters.sandbox import sandbox_command

REPO_ROOT = Path(psp_adapters.__file__).resolve().parent.parent
ADAPTER_READ_TIMEOUT = 1.5
SANDBOX_HOLD_SECONDS = 3.0
TEST_TIMINGS = [
    "--processing-delay", "0.05", "--dispute-delay", "0.5", "--refund-failure-delay", "0.2",
    "--sepa-delay", "0.2", "--return-delay", "0.5", "--webhook-backoff", "0.2",
]  # fmt: skip


@dataclass
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A tiny HTTP server that records every POST. `fail_next(n, match)` answers 500 to the next
    n POSTs whose body contains `match` (any POST when match is empty)."""

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self._cond = threading.Condition()
        self._fail = 0
        self._fail_match = b""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    failing = receiver._fail > 0 and receiver._fail_match in body
                    if failing:
                        receiver._fail -= 1
                    receiver.attempts.append(ReceivedWebhook(self.path, dict(self.headers.items()), body))
                    if not failing:
                        receiver.received.append(ReceivedWebhook(self.path, dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.attempts: list[ReceivedWebhook] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def fail_next(self, n: int, match: str = "") -> None:
        with self._cond:
            self._fail = n
            self._fail_match = match.encode()

    def wait_for(self, pred: Callable[[ReceivedWebhook], bool], timeout: float = 10.0) -> ReceivedWebhook:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for hook in self.received:
                    try:
                        if pred(hook):
                            return hook
                    except (ValueError, KeyError, TypeError):
                        continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching webhook within {timeout}s ({len(self.received)} received)")
                self._cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sandbox_auth(psp: str, api_key: str) -> dict[str, str]:
    """The headers a sandbox's API (and its operations endpoints) takes the API key in."""
    if psp == "alpha":
        return {"Authorization": f"Bearer {api_key}"}
    return {"X-Api-Key": api_key}


@dataclass
class SandboxProcess:
    psp: str
    data_dir: Path
    api_key: str
    webhook_secret: str
    webhook_url: str = ""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env[f"SANDBOX_{self.psp.upper()}_API_KEY"] = self.api_key
        env[f"SANDBOX_{self.psp.upper()}_WEBHOOK_SECRET"] = self.webhook_secret
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = sandbox_command(
            self.psp,
            port=self.port,
            data_dir=self.data_dir,
            webhook_url=self.webhook_url,
            hold_seconds=SANDBOX_HOLD_SECONDS,
        )
        log = open(self.data_dir / f"{self.psp}.log", "ab")  # noqa: SIM115 - handed to the child
        cmd += [*TEST_TIMINGS, "--exit-with-parent"]
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        log.close()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode() if ready else ""
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"{self.psp} sandbox did not start: {line!r}; see {self.data_dir}/{self.psp}.log")
        self.port = int(line.rsplit(":", 1)[1])
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/_sandbox/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.psp} sandbox not healthy at {self.url}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        """Stop the process and start a new one on the same port and data dir."""
        self.stop()
        self.start()

    def _auth(self) -> dict[str, str]:
        return sandbox_auth(self.psp, self.api_key)

    def set_webhook_url(self, url: str) -> None:
        self.webhook_url = url
        httpx.put(self.url + "/_sandbox/config", json={"webhook_url": url}, headers=self._auth()).raise_for_status()

    def events(self) -> list[dict[str, Any]]:
        response = httpx.get(self.url + "/_sandbox/events", headers=self._auth())
        response.raise_for_status()
        return response.json()["events"]

    def payments(self, reference: str | None = None) -> list[dict[str, Any]]:
        """The authorizations the sandbox holds (with operations and disputes)."""
        params = {"reference": reference} if reference else None
        response = httpx.get(self.url + "/_sandbox/payments", params=params, headers=self._auth())
        response.raise_for_status()
        return response.json()["payments"]

    def resend(self, event_id: str) -> None:
        """Deliver an event again (duplicate-webhook tests)."""
        httpx.post(f"{self.url}/_sandbox/events/{event_id}/resend", headers=self._auth()).raise_for_status()

    def open_dispute(self, payment_id: str, reason: str) -> dict[str, Any]:
        """The shopper's bank disputes the captured payment `payment_id` (the PSP's id) now:
        `fraudulent`, `debit_returned` (a SEPA return: `lost`, final) or `debit_unauthorized` (a
        SEPA unauthorised-transaction claim: `needs_response`). The sandbox sends its webhook."""
        response = httpx.post(f"{self.url}/_sandbox/payments/{payment_id}/disputes", json={"reason": reason},
                              headers=self._auth())
        response.raise_for_status()
        return response.json()["dispute"]

    def close_dispute(self, dispute_id: str, status: str) -> httpx.Response:
        """The network decides an open dispute (`won` | `lost`): the sandbox sends its webhook."""
        return httpx.post(f"{self.url}/_sandbox/disputes/{dispute_id}/close", json={"status": status},
                          headers=self._auth())

    def return_refund(self, operation_id: str) -> httpx.Response:
        """The shopper's bank sends a succeeded refund back: the sandbox reports it `failed` and
        sends the refund's webhook again."""
        return httpx.post(f"{self.url}/_sandbox/refunds/{operation_id}/return", headers=self._auth())

    def set_evidence_due(self, dispute_id: str, due: float | None) -> httpx.Response:
        """Move a dispute's evidence due date (unix seconds; in the past: the PSP refuses evidence)."""
        return httpx.put(f"{self.url}/_sandbox/disputes/{dispute_id}", json={"evidence_due_by": due},
                         headers=self._auth())

    def dispute(self, dispute_id: str) -> dict[str, Any]:
        """One dispute as the sandbox holds it, with the evidence it took (`evidence`, or None)."""
        for payment in self.payments():
            for d in payment["disputes"]:
                if d["id"] == dispute_id:
                    return d
        raise AssertionError(f"{self.psp} holds no dispute {dispute_id}")

    def reset(self) -> None:
        """Forget all state (e.g. before a day whose settlement report must reconcile 100 %)."""
        httpx.post(self.url + "/_sandbox/reset", headers=self._auth()).raise_for_status()

    @staticmethod
    def submit_challenge(url: str, result: str) -> httpx.Response:
        """Act as the shopper: open the challenge/bank page and submit its form."""
        page = httpx.get(url)
        page.raise_for_status()
        assert 'name="result"' in page.text
        return httpx.post(url, data={"result": result}, follow_redirects=False)


@pytest.fixture(scope="session")
def psp_webhooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory, psp_webhooks: WebhookReceiver) -> Iterator[dict[str, Any]]:
    started: dict[str, SandboxProcess] = {}
    data_dir = tmp_path_factory.mktemp("sandbox")
    try:
        for psp in ("alpha", "beta"):
            sb = SandboxProcess(
                psp=psp,
                data_dir=data_dir,
                api_key=f"{psp}_key_" + os.urandom(6).hex(),
                webhook_secret=f"{psp}_whsec_" + os.urandom(12).hex(),
                webhook_url=f"{psp_webhooks.url}/{psp}",
            )
            sb.start()
            started[psp] = sb
        yield started
    finally:
        for sb in started.values():
            sb.stop()


def connectors_for(sandboxes: dict[str, SandboxProcess]) -> dict[str, Any]:
    return {
        "alpha": {
            "ADAPTER": "psp_adapters.alpha.AlphaAdapter",
            "OPTIONS": {"base_url": sandboxes["alpha"].url, "read_timeout": ADAPTER_READ_TIMEOUT, "connect_timeout": 1},
        },
        "beta": {
            "ADAPTER": "psp_adapters.beta.BetaAdapter",
            "OPTIONS": {"base_url": sandboxes["beta"].url, "read_timeout": ADAPTER_READ_TIMEOUT, "connect_timeout": 1},
        },
    }


@pytest.fixture
def psp_settings(sandboxes: dict[str, SandboxProcess], settings: Any) -> Iterator[dict[str, SandboxProcess]]:
    from payera.secrets.services import secret_put
    from psp_adapters.registry import adapters_reset

    settings.PSP_CONNECTORS = connectors_for(sandboxes)
    # one data dir holds <psp>.sqlite3 of both, as in `make run`: the report command reads it
    settings.SANDBOX_DATA_DIR = str(sandboxes["alpha"].data_dir)
    try:
        from payera.secrets.services import get_backend

        get_backend()
    except ImportError:  # the configured backend is not built yet: keep the credentials in memory
        settings.SECRETS_BACKEND = "memory"
    for psp, sb in sandboxes.items():
        secret_put(f"psp/{psp}", {"api_key": sb.api_key, "webhook_secret": sb.webhook_secret})
    adapters_reset()
    yield sandboxes
    adapters_reset()
