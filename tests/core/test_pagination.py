"""Cursor pagination edges: limits, unknown cursors, ties on `created`, newest first."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

pytestmark = [pytest.mark.urls("tests.core.error_urls"), pytest.mark.django_db]


@pytest.fixture
def users():
    now = timezone.now()
    made = []
    for i in range(25):
        # Every 5 users share one timestamp: ordering must still be total and stable.
        made.append(User.objects.create(username=f"u{i:02d}", date_joined=now - timedelta(seconds=i // 5)))
    return made


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5"])
def test_out_of_range_limit_is_400(client, users, limit):
    response = client.get("/_test/users", {"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_inclusive(client, users, limit):
    response = client.get("/_test/users", {"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["data"]) == min(int(limit), 25)


def test_default_limit_is_10(client, users):
    body = client.get("/_test/users").json()
    assert body["object"] == "list" and len(body["data"]) == 10 and body["has_more"] is True


def test_unknown_cursor_is_400(client, users):
    response = client.get("/_test/users", {"starting_after": "999999"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "starting_after"


def test_walking_pages_returns_every_row_once_newest_first(client, users):
    seen, cursor = [], None
    while True:
        params = {"limit": 7} | ({"starting_after": cursor} if cursor else {})
        body = client.get("/_test/users", params).json()
        seen.extend(row["id"] for row in body["data"])
        if not body["has_more"]:
            break
        cursor = body["data"][-1]["id"]
    expected = [u.pk for u in sorted(users, key=lambda u: (u.date_joined, u.pk), reverse=True)]
    assert seen == expected


def test_last_page_has_more_false(client, users):
    oldest_but_one = sorted(users, key=lambda u: (u.date_joined, u.pk))[1]
    body = client.get("/_test/users", {"starting_after": oldest_but_one.pk, "limit": 5}).json()
    assert len(body["data"]) == 1 and body["has_more"] is False
