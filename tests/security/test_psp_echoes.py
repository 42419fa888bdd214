"""A PSP whose answer quotes the card it was sent (a decline message, an error body) does not put
the card number into Payera: not in the payment's answer or `last_error`, the attempt's row (the
back office shows it), or the events sent to the merchant. The PSP is a real HTTP server on the
loopback that speaks alpha's API and echoes the card, as a careless provider might."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.backoffice.leaks import leaks

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
CARD = {"type": "card", "card": {"number": PAN, "exp_month": 12, "exp_year": 2034, "cvc": "737"}}


class EchoingAlpha(BaseHTTPRequestHandler):
    mode = "decline"  # or "reject": a 400 whose error message quotes the card

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        number = (body.get("card") or {}).get("number", "")
        if self.mode == "reject":
            status, answer = 400, {"error": {"code": "invalid_card", "message": f"card {number} is not valid"}}
        else:
            status, answer = (
                200,
                {
                    "id": "auth_ECHO",
                    "merchant_reference": body.get("merchant_reference"),
                    "status": "declined",
                    "response_code": "05",
                    "response_message": f"Do not honor (card {number}, {number[:4]} "
                    f"{number[4:8]} {number[8:12]} {number[12:]})",
                    "amount": body.get("amount"),
                    "currency": body.get("currency"),
                },
            )
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def echoing_alpha(settings):
    from payera.secrets.services import secret_put
    from psp_adapters.registry import adapters_reset

    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingAlpha)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SECRETS_BACKEND = "memory"
    settings.PSP_CONNECTORS = {
        "alpha": {
            "ADAPTER": "psp_adapters.alpha.AlphaAdapter",
            "OPTIONS": {
                "base_url": f"http://127.0.0.1:{server.server_address[1]}",
                "read_timeout": 2,
                "connect_timeout": 1,
            },
        }
    }
    secret_put("psp/alpha", {"api_key": "alpha-test-key", "webhook_secret": "alpha-test-webhook-secret"})
    adapters_reset()
    yield EchoingAlpha
    EchoingAlpha.mode = "decline"
    server.shutdown()
    server.server_close()
    adapters_reset()


@pytest.mark.parametrize("mode", ["decline", "reject"])
def test_a_psp_answer_quoting_the_card_never_reaches_answers_rows_or_events(make_merchant_client, echoing_alpha, mode):
    from payera.events.models import Event
    from payments.models import PaymentAttempt

    echoing_alpha.mode = mode
    merchant, client = make_merchant_client(connectors=["alpha"])
    response = client.post(
        "/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "failed"
    attempts = list(PaymentAttempt.objects.filter(merchant=merchant).values("decline_message", "error"))
    assert attempts and any(a["decline_message"] or a["error"] for a in attempts)  # the PSP's words were kept
    texts = {
        "answer": response.content.decode(),
        "attempt rows": json.dumps(attempts),
        "events": json.dumps([e.data for e in Event.objects.filter(merchant_id=merchant.id)]),
    }
    for where, text in texts.items():
        assert leaks(text) == [], (where, text)
