"""The posting call's arrays travel as PostgreSQL array literals built in Python (ledger.engine):
PostgreSQL must read back exactly the values sent, whatever they hold."""

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.engine import _text_array
from ledger.types import JournalKind

# PostgreSQL text holds any character but NUL
_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)


def _read_back(literal: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[]", [literal])
        return cursor.fetchone()[0]


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_TEXT, st.none(), st.sampled_from(['"', "\\", "a,b", "{x}", " ", "NULL", ""])), max_size=8))
def test_a_text_array_reads_back_as_sent(values):
    assert _read_back(_text_array(values)) == values


@pytest.mark.django_db
def test_plain_values_enums_and_generators_read_back():
    assert _read_back(_text_array([])) == []
    assert _read_back(_text_array(["ref:1", "", "NULL", "a b,{c}"])) == ["ref:1", "", "NULL", "a b,{c}"]
    assert _read_back(_text_array([JournalKind.CAPTURE, JournalKind.REFUND])) == ["capture", "refund"]
    assert _read_back(_text_array(k for k in ("x", 'y"', None))) == ["x", 'y"', None]
    assert _read_back(_text_array([1, "2"])) == ["1", "2"]
