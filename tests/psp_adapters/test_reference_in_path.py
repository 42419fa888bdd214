"""A PSP reference goes into the PSP's URL as one path segment.

What was wrong: the clients put references into paths as they were (`/api/payments/{ref}`). A
reference comes from the PSP, a signed webhook's included (used when the attempt has none yet):
with `/`, `?`, `#` or `..` in it, an inquiry reached another of the PSP's endpoints (`../disputes/x`
resolves to `/api/disputes/x`) or sent a query of its own. Only the dispute inquiry escaped its id.
Now every reference is escaped as one segment, dots included. A stand-in for the PSP (outside the
machine) records the paths it is asked for."""

from __future__ import annotations

import httpx
import pytest

from psp_adapters.alpha.client import AlphaClient
from psp_adapters.beta.client import BetaClient
from psp_adapters.http import PspHttp
from tests.helpers import psp_at, standin_psp

HOSTILE = "../disputes/dp_1?x=1#y"


@pytest.fixture
def psp():
    with standin_psp(lambda method, path, body: (200, {})) as (url, seen), httpx.Client(timeout=5) as http:
        yield PspHttp(connector="t", http=http, base_url=url, headers={}), seen


ESCAPED = "%2E%2E%2Fdisputes%2Fdp_1%3Fx%3D1%23y"


def test_alpha_sends_a_reference_as_one_segment(psp):
    http, seen = psp
    api = AlphaClient(http)
    api.get_authorization(HOSTILE)
    api.operation(HOSTILE, "capture", {"merchant_reference": "op_1"})
    api.get_dispute(HOSTILE)
    assert [path for _, path in seen] == [
        f"/v1/authorizations/{ESCAPED}",
        f"/v1/authorizations/{ESCAPED}/capture",
        f"/v1/disputes/{ESCAPED}",
    ]


def test_beta_sends_a_reference_as_one_segment(psp):
    http, seen = psp
    api = BetaClient(http)
    api.get_payment(HOSTILE)
    api.modify(HOSTILE, "refunds", {"reference": "op_1"})
    api.get_dispute("..")
    assert [path for _, path in seen] == [
        f"/api/payments/{ESCAPED}",
        f"/api/payments/{ESCAPED}/refunds",
        "/api/disputes/%2E%2E",
    ]


@pytest.mark.django_db
def test_a_lookup_answer_without_the_psps_id_is_an_unknown_outcome_not_a_key_error(psp, settings, psp_settings):
    """An operation on an authorization whose PSP id we never learned looks it up by our reference;
    an answer without the id raised KeyError (a 500 with the payment's claim held) instead of the
    PspProtocolError every other unreadable answer is."""
    from psp_adapters.errors import PspProtocolError
    from psp_adapters.port import CaptureRequest, PspReference
    from psp_adapters.registry import get_adapter

    http, seen = psp
    for name in ("alpha", "beta"):
        psp_at(settings, name, http.base_url)
        request = CaptureRequest(payment=PspReference("att_1"), reference="cap_1", amount=100, currency="EUR")
        with pytest.raises(PspProtocolError):
            get_adapter(name).capture(request)
    assert [method for method, path in seen if "att_1" in path] == ["GET", "GET"]  # the lookups; no capture sent
