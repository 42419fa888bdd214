"""The sandbox HTTP server: stdlib ThreadingHTTPServer, a tiny router, the shared pages.

Shared by both sandboxes:
- `GET|POST /challenge/<token>`: the 3-D Secure challenge page (a plain HTML form, field `result`
  = pass | fail); `GET|POST /bank/<token>`: the sandbox bank's page, the same form. After the
  POST the shopper is redirected (303) to the `return_url` of the payment.
- `GET /_sandbox/health` (no auth), `GET /_sandbox/events` (webhooks sent and their delivery
  state), `GET /_sandbox/payments[?reference=…]` (authorizations with their operations and
  disputes, no PAN), `POST /_sandbox/events/<id>/resend` (deliver again),
  `POST /_sandbox/payments/<psp payment id>/disputes` (`{"reason": "fraudulent" | "debit_returned" |
  "debit_unauthorized"}`: the payment is disputed now; a returned debit opens `lost`, final, any
  other `needs_response`; its webhook goes out), `POST /_sandbox/disputes/<id>/close`
  (`{"status": "won" | "lost"}`: the network decided; the dispute's webhook goes out with its
  final status), `PUT /_sandbox/disputes/<id>`
  (`{"evidence_due_by": <unix seconds> | null}`: move the evidence due date),
  `POST /_sandbox/refunds/<operation id>/return` (the shopper's bank sent a succeeded refund back:
  it becomes `failed` and its webhook goes out again), `POST /_sandbox/reset`
  (forget everything), `PUT /_sandbox/config` (`{"webhook_url": …}`, changes the webhook target
  at runtime; `{"chaos": {...}}` turns the chaos mode on, `{}` off; `GET` shows it and what it
  injected). All but health need the API key.
Everything else is the wire format of the PSP (`alpha.py`, `beta.py`).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from psp_adapters.sandbox.core import Core, SandboxError
from psp_adapters.sandbox.money import minor_to_decimal_string

log = logging.getLogger("psp_adapters.sandbox")
CHAOS_KEYS = {"error_rate", "timeout_rate", "timeout_seconds", "duplicate_webhook_rate", "late_webhook_seconds"}


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Any
    body: bytes

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise SandboxError(400, "invalid_json", "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise SandboxError(400, "invalid_json", "The body must be a JSON object.")
        return data

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0  # seconds to wait before answering (the slow card)

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> Response:
        return cls(status, json.dumps(data).encode(), headers=headers)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>{psp} sandbox &middot; payment {reference} &middot; {amount} {currency}</p>
<form method="post" action="{action}">
  <label><input type="radio" name="result" value="pass" checked> pass (approve)</label><br>
  <label><input type="radio" name="result" value="fail"> fail (refuse)</label><br>
  <button type="submit">Submit</button>
</form>
</body></html>
"""


class SandboxApp:
    """The sandbox's routes and request handling, without sockets: served by `SandboxServer`
    over HTTP, or in process through an httpx transport (`inprocess.py`)."""

    def __init__(self, core: Core, routes: list[Route]):
        self.core = core
        self.routes = [*self._shared_routes(), *routes]

    def dispatch(self, method: str, target: str, headers: Any, body: bytes) -> Response:
        split = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        path_matched = False
        for route in self.routes:
            m = route.pattern.fullmatch(split.path)
            if m is None:
                continue
            path_matched = True
            if route.method != method:
                continue
            req = Request(method, split.path, m.groupdict(), query, headers, body)
            try:
                if route.auth and not self.authenticate(headers):
                    raise SandboxError(401, "unauthorized", "Missing or invalid API key.")
                chaos = bool(self.core.opts.chaos) and not split.path.startswith("/_sandbox/")
                if chaos and self.core.chaos_hit("errors", "error_rate"):
                    raise SandboxError(503, "sandbox_chaos", "Chaos: failed before processing.")
                if method == "GET":
                    return route.handler(req)
                # the whole request is one transaction: any error (a 4xx, or a 500 from a bug)
                # rolls back, so "5xx = not processed" holds for this PSP
                with self.core.store.tx():
                    response = route.handler(req)
                if chaos and self.core.chaos_hit("timeouts", "timeout_rate"):
                    # processed and committed, but the answer comes after the adapter gave up
                    response.hold = max(response.hold, self.core.chaos("timeout_seconds") or 3.0)
                return response
            except SandboxError as err:
                return self.error_response(err)
            except Exception:
                log.exception("sandbox handler error")
                return self.error_response(SandboxError(500, "internal_error", "Internal error."))
        code = 405 if path_matched else 404
        return self.error_response(SandboxError(code, "not_found", "No such endpoint."))

    def authenticate(self, headers: Any) -> bool:
        presented = self.core.wire.api_key_from(headers)
        return bool(presented) and hmac.compare_digest(presented, self.core.opts.api_key)

    def error_response(self, err: SandboxError) -> Response:
        return self.core.wire.error(err)

    # --- shared routes ----------------------------------------------------------------
    def _shared_routes(self) -> list[Route]:
        def r(method: str, pattern: str, handler: Handler, auth: bool = True) -> Route:
            return Route(method, re.compile(pattern), handler, auth)

        return [
            r(
                "GET",
                r"/_sandbox/health",
                lambda req: Response.json(200, {"status": "ok", "psp": self.core.psp}),
                False,
            ),
            r("GET", r"/_sandbox/events", self._events),
            r("PUT", r"/_sandbox/config", self._config),
            r("GET", r"/_sandbox/config", self._config),
            r("GET", r"/_sandbox/payments", self._payments),
            r("POST", r"/_sandbox/events/(?P<id>[A-Za-z0-9_]+)/resend", self._resend),
            r("POST", r"/_sandbox/payments/(?P<id>[A-Za-z0-9_]+)/disputes", self._open_dispute),
            r("POST", r"/_sandbox/disputes/(?P<id>[A-Za-z0-9_]+)/close", self._close_dispute),
            r("PUT", r"/_sandbox/disputes/(?P<id>[A-Za-z0-9_]+)", self._dispute_update),
            r("POST", r"/_sandbox/refunds/(?P<id>[A-Za-z0-9_]+)/return", self._return_refund),
            r("POST", r"/_sandbox/reset", self._reset),
            r("GET", r"/(?P<page>challenge|bank)/(?P<token>[A-Za-z0-9]+)", self._page, False),
            r("POST", r"/(?P<page>challenge|bank)/(?P<token>[A-Za-z0-9]+)", self._page_submit, False),
        ]

    def _events(self, req: Request) -> Response:
        return Response.json(200, {"events": self.core.events()})

    def _payments(self, req: Request) -> Response:
        return Response.json(200, {"payments": self.core.payments_debug(req.query.get("reference"))})

    def _resend(self, req: Request) -> Response:
        self.core.resend(req.params["id"])
        return Response.json(202, {"resent": req.params["id"]})

    def _open_dispute(self, req: Request) -> Response:
        data = req.json()
        reason = data.get("reason") if isinstance(data, dict) else None
        return Response.json(201, {"dispute": self.core.open_dispute(req.params["id"], str(reason or ""))})

    def _close_dispute(self, req: Request) -> Response:
        data = req.json()
        status = data.get("status") if isinstance(data, dict) else None
        return Response.json(200, {"dispute": self.core.close_dispute(req.params["id"], str(status or ""))})

    def _dispute_update(self, req: Request) -> Response:
        data = req.json()
        if not isinstance(data, dict) or set(data) != {"evidence_due_by"}:
            raise SandboxError(400, "invalid_update", "Only evidence_due_by can be set.", "evidence_due_by")
        return Response.json(200, {"dispute": self.core.dispute_set_due(req.params["id"], data["evidence_due_by"])})

    def _return_refund(self, req: Request) -> Response:
        return Response.json(200, {"operation": self.core.return_refund(req.params["id"])})

    def _reset(self, req: Request) -> Response:
        self.core.reset()
        return Response.json(200, {"reset": True})

    def _config(self, req: Request) -> Response:
        data = req.json() if req.method == "PUT" else {}
        if "webhook_url" in data:
            self.core.opts.webhook_url = str(data["webhook_url"] or "")
        if "chaos" in data:
            chaos = data["chaos"] or {}
            if not isinstance(chaos, dict) or not set(chaos) <= CHAOS_KEYS:
                raise SandboxError(400, "invalid_chaos", f"chaos takes {sorted(CHAOS_KEYS)}.", "chaos")
            try:
                self.core.opts.chaos = {k: float(v) for k, v in chaos.items()}
            except (TypeError, ValueError):
                raise SandboxError(400, "invalid_chaos", "chaos values are numbers.", "chaos") from None
        return Response.json(
            200,
            {"webhook_url": self.core.opts.webhook_url, "chaos": self.core.opts.chaos,
             "chaos_counts": dict(self.core.chaos_counts)},
        )

    def _page(self, req: Request) -> Response:
        row = self.core.payment_by_action_token(req.params["token"])
        title = "Sandbox bank: approve the payment" if req.params["page"] == "bank" else "3-D Secure challenge"
        body = PAGE.format(
            title=title,
            psp=html.escape(self.core.psp),
            reference=html.escape(row["reference"]),
            amount=html.escape(minor_to_decimal_string(row["amount"], row["currency"])),
            currency=html.escape(row["currency"]),
            action=html.escape(f"/{req.params['page']}/{req.params['token']}"),
        )
        return Response(200, body.encode(), content_type="text/html; charset=utf-8")

    def _page_submit(self, req: Request) -> Response:
        result = req.form().get("result", "")
        row = self.core.complete_challenge(req.params["token"], result)
        if row["return_url"]:
            target = _with_query(row["return_url"], {"reference": row["reference"], "psp_reference": row["id"]})
            return Response(303, b"", content_type="text/plain", headers={"Location": target})
        text = f"<!doctype html><p>Done: {html.escape(row['state'])}. You may close this window.</p>"
        return Response(200, text.encode(), content_type="text/html; charset=utf-8")


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    exit_with_parent = False

    def __init__(self, address: tuple[str, int], core: Core, routes: list[Route], *, verbose: bool = False):
        self.core = core
        self.app = SandboxApp(core, routes)
        self.verbose = verbose
        super().__init__(address, SandboxHandler)


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the adapters' pooled connections are reused
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: SandboxServer

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = self.server.app.dispatch(method, self.path, self.headers, body)
        if response.hold:
            time.sleep(response.hold)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for k, v in response.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the slow card): the authorization stays recorded
