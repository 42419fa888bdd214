"""Endpoints outside /v1/ that no merchant calls: PSP webhooks and the shopper's return.

- `POST /webhooks/psp/<connector>/`: the PSP's signed webhook. 400 (and a security record) on a
  bad signature, 404 for an unknown connector, else 200 as soon as it is stored (a repeat: 200
  once the first delivery committed; 503 with Retry-After when it could not be stored yet).
- `GET /payments/return/<payment id>`: where the PSP sends the shopper after 3-D Secure / the
  bank page. We ask the PSP, record the outcome, and redirect to the merchant's `return_url`
  (with `payment=<id>` appended), or show a small page when there is none.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from payera.audit.middleware import client_ip
from payera.core.errors import ServiceUnavailableError
from payments.services import payment_authentication_complete, psp_webhook_receive
from psp_adapters.errors import PspConfigurationError, WebhookPayloadError, WebhookSignatureError

MAX_WEBHOOK_BYTES = 256 * 1024


@csrf_exempt
@require_POST
def psp_webhook(request, connector: str):
    body = request.body
    if len(body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": {"type": "invalid_request_error", "code": "payload_too_large"}}, status=413)
    headers = {k: v for k, v in request.headers.items()}
    try:
        row = psp_webhook_receive(connector=connector, body=body, headers=headers, remote_addr=client_ip(request))
    except PspConfigurationError:
        return JsonResponse({"error": {"type": "invalid_request_error", "code": "resource_missing",
                                       "message": "Unknown connector."}}, status=404)
    except (WebhookSignatureError, WebhookPayloadError) as exc:
        return JsonResponse({"error": {"type": "invalid_request_error", "code": exc.code,
                                       "message": exc.message}}, status=400)
    except ServiceUnavailableError as exc:  # not stored: the PSP delivers it again
        return JsonResponse(exc.to_dict(), status=exc.http_status, headers={"Retry-After": "5"})
    return JsonResponse({"received": True, "id": row.event_id})


@require_GET
def payment_return(request, payment_id: str):
    payment = payment_authentication_complete(payment_id=payment_id)
    if payment is None:
        return HttpResponse("Unknown payment.", status=404, content_type="text/plain")
    if payment.return_url:
        parts = urlsplit(payment.return_url)
        query = (parts.query + "&" if parts.query else "") + urlencode({"payment": payment.id})
        return HttpResponseRedirect(urlunsplit(parts._replace(query=query)))
    return HttpResponse(f"Payment {payment.id}: {payment.status}. You may close this page.",
                        content_type="text/plain")
