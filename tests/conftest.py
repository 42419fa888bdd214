"""Fixtures shared by the whole suite. Tests talk to the real PostgreSQL and Redis."""

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()
