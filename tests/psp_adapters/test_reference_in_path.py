"""A PSP reference goes into the PSP's URL as one path segment.

What was wrong: the clients put references into paths as they were (`/api/payments/{ref}`). A
reference comes from the PSP, a signed webhook's included (used when the attempt has none yet):
with `/`, `?`, `#` or `..` in it, an inquiry reached another of the PSP's endpoints (`../disputes/x`
resolves to `/api/disputes/x`) or sent a query of its own. Only the dispute inquiry escaped its id.
Now every reference is escaped as one segment, dots included. A stand-in for the PSP (outside the
machine) records the paths it is asked for."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from psp_adapters.alpha.client import AlphaClient
from psp_adapters.beta.client import BetaClient
from psp_adapters.http import PspHttp

HOSTILE = "../disputes/dp_1?x=1#y"


@pytest.fixture
def psp():
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    http = httpx.Client(timeout=5)
    yield PspHttp(connector="t", http=http, base_url=f"http://127.0.0.1:{server.server_address[1]}", headers={}), seen
    http.close()
    server.shutdown()
    server.server_close()


ESCAPED = "%2E%2E%2Fdisputes%2Fdp_1%3Fx%3D1%23y"


def test_alpha_sends_a_reference_as_one_segment(psp):
    http, seen = psp
    api = AlphaClient(http)
    api.get_authorization(HOSTILE)
    api.operation(HOSTILE, "capture", {"merchant_reference": "op_1"})
    api.get_dispute(HOSTILE)
    assert seen == [f"/v1/authorizations/{ESCAPED}", f"/v1/authorizations/{ESCAPED}/capture", f"/v1/disputes/{ESCAPED}"]


def test_beta_sends_a_reference_as_one_segment(psp):
    http, seen = psp
    api = BetaClient(http)
    api.get_payment(HOSTILE)
    api.modify(HOSTILE, "refunds", {"reference": "op_1"})
    api.get_dispute("..")
    assert seen == [f"/api/payments/{ESCAPED}", f"/api/payments/{ESCAPED}/refunds", "/api/disputes/%2E%2E"]


@pytest.mark.django_db
def test_a_lookup_answer_without_the_psps_id_is_an_unknown_outcome_not_a_key_error(psp, settings, psp_settings):
    """An operation on an authorization whose PSP id we never learned looks it up by our reference;
    an answer without the id raised KeyError (a 500 with the payment's claim held) instead of the
    PspProtocolError every other unreadable answer is."""
    from psp_adapters.errors import PspProtocolError
    from psp_adapters.port import CaptureRequest, PspReference
    from psp_adapters.registry import adapters_reset, get_adapter

    http, seen = psp
    for name in ("alpha", "beta"):
        conf = settings.PSP_CONNECTORS[name]
        settings.PSP_CONNECTORS = {
            **settings.PSP_CONNECTORS,
            name: {**conf, "OPTIONS": {**conf["OPTIONS"], "base_url": http.base_url}},
        }
        adapters_reset()
        request = CaptureRequest(payment=PspReference("att_1"), reference="cap_1", amount=100, currency="EUR")
        with pytest.raises(PspProtocolError):
            get_adapter(name).capture(request)
    adapters_reset()
    assert len(seen) == 2 and all("att_1" in path for path in seen)  # the lookups, and no capture sent
