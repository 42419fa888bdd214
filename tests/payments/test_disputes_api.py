"""`GET /v1/disputes` filters (docs/api.md "Disputes")."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db]


def test_an_unknown_status_filter_is_400_not_an_empty_list(merchant_client):
    """`?status=` was applied as given: a status that does not exist (`open`, `needs-response`)
    answered 200 with an empty list, so a merchant polling for disputes to answer was told it had
    none. It is 400 naming `status` and the statuses there are, as `GET /v1/bookings` answers."""
    for wrong in ("open", "needs-response", "WON"):
        r = merchant_client.get("/v1/disputes", {"status": wrong})
        assert r.status_code == 400, (wrong, r.content)
        error = r.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "status")
        assert "needs_response" in error["message"]
    for right in ("needs_response", "under_review", "won", "lost"):
        r = merchant_client.get("/v1/disputes", {"status": right})
        assert r.status_code == 200 and r.json() == {"object": "list", "data": [], "has_more": False}
