"""Fixtures of the payments tests."""

from tests.scenarios.conftest import sqlite_flushable  # noqa: F401 - a fixture, shared
