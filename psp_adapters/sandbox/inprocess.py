"""A sandbox inside the calling process: the same app, storage and card behaviour, reached
through an httpx transport instead of a socket. For benchmarks ("alpha in process") and fast
tests; the subprocess servers remain the reference (they are what `make run` and the
end-to-end tests use).

- The slow card's hold is emulated: longer than the client's read timeout raises
  `httpx.ReadTimeout` after that timeout, as a real socket would.
- Webhooks are delivered over HTTP when `webhook_url` is set; `signed_events()` gives them
  signed, for feeding `parse_webhook` directly.
- One process per data dir: two processes sharing a data dir would both run its jobs.

`PSP_CONNECTORS[name]["OPTIONS"]["in_process"] = True` makes the registry build the adapter on
an in-process sandbox in `SANDBOX_DATA_DIR`, with the credentials from the secrets backend.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from psp_adapters.sandbox.core import Core, Options
from psp_adapters.sandbox.server import SandboxApp
from psp_adapters.sandbox.store import Store, db_path


class InProcessSandbox:
    def __init__(
        self,
        psp: str,
        data_dir: str | Path,
        *,
        api_key: str,
        webhook_secret: str,
        webhook_url: str = "",
        public_url: str = "",
        **timings: Any,
    ) -> None:
        if psp == "alpha":
            from psp_adapters.sandbox.alpha import AlphaWire as WireClass
        else:
            from psp_adapters.sandbox.beta import BetaWire as WireClass  # type: ignore[assignment]
        self.psp = psp
        self.url = (public_url or f"http://{psp}.sandbox.invalid").rstrip("/")
        opts = Options(
            psp=psp,
            api_key=api_key,
            webhook_secret=webhook_secret,
            webhook_url=webhook_url,
            public_url=self.url,
            **timings,
        )
        wire = WireClass()
        self.core = Core(Store(db_path(data_dir, psp)), opts, wire)
        wire.core = self.core
        self.app = SandboxApp(self.core, wire.routes())
        self.transport = httpx.MockTransport(self.handle)
        self.core.start()

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        resp = self.app.dispatch(request.method, request.url.raw_path.decode("ascii"), request.headers, body)
        if resp.hold:
            read_timeout = (request.extensions.get("timeout") or {}).get("read")
            if read_timeout is not None and resp.hold > read_timeout:
                time.sleep(read_timeout)
                raise httpx.ReadTimeout("in-process sandbox held the answer", request=request)
            time.sleep(resp.hold)
        headers = {"Content-Type": resp.content_type, **resp.headers}
        return httpx.Response(resp.status, headers=headers, content=resp.body, request=request)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client reaching this sandbox (e.g. a shopper opening the challenge page)."""
        return httpx.Client(transport=self.transport, **kwargs)

    def signed_events(self) -> list[tuple[dict[str, str], bytes]]:
        """Every webhook the sandbox emitted, as (headers, body) signed now."""
        out = []
        for event in self.core.events():
            body = event["body"].encode()
            out.append((self.core.wire.sign(body, self.core.opts.webhook_secret), body))
        return out

    def close(self) -> None:
        self.core.stop()
        self.core.store.close()


_sandboxes: dict[tuple[str, str], InProcessSandbox] = {}
_lock = threading.Lock()


def in_process_sandbox(psp: str, data_dir: str | Path, **kwargs: Any) -> InProcessSandbox:
    """One in-process sandbox per (psp, data dir) in this process, created on first use."""
    key = (psp, str(Path(data_dir).resolve()))
    with _lock:
        if key not in _sandboxes:
            _sandboxes[key] = InProcessSandbox(psp, data_dir, **kwargs)
        return _sandboxes[key]


def in_process_sandboxes_close(data_dir: str | Path | None = None) -> None:
    """Stop the in-process sandboxes (of one data dir, or all)."""
    with _lock:
        for key in list(_sandboxes):
            if data_dir is None or key[1] == str(Path(data_dir).resolve()):
                _sandboxes.pop(key).close()
