import pytest
from django.db import transaction

from payera.core.db import outside_transaction
from payera.core.ids import has_prefix, new_id


def test_ids_carry_their_prefix_and_are_random():
    ids = [new_id("pay") for _ in range(2000)]
    assert all(i.startswith("pay_") and len(i) == 28 for i in ids)
    assert len(set(ids)) == len(ids)
    assert sorted(ids) != ids  # not sequential
    assert has_prefix(ids[0], "pay") and not has_prefix(ids[0], "re")


def test_id_characters_are_uniform_over_base62(monkeypatch):
    """Rejection sampling: bytes 248-255 are dropped, not folded onto the alphabet (no modulo
    bias), and a draw short of 24 accepted bytes draws again."""
    import collections
    import string

    from payera.core import ids as ids_module

    counts = collections.Counter(ch for _ in range(20000) for ch in new_id("x")[2:])
    alphabet = string.digits + string.ascii_letters
    assert set(counts) == set(alphabet)
    expected = 20000 * 24 / 62
    assert all(abs(n - expected) < 0.06 * expected for n in counts.values())
    draws = iter([bytes([248] * 20 + list(range(12))), bytes(range(12, 44))])
    monkeypatch.setattr(ids_module.os, "urandom", lambda n: next(draws))
    assert new_id("x") == "x_" + alphabet[:24]


@pytest.mark.django_db(transaction=True)
def test_outside_transaction_refuses_to_run_inside_one():
    with outside_transaction():
        pass  # fine at top level
    with pytest.raises(RuntimeError), transaction.atomic(), outside_transaction():
        pass


@pytest.mark.django_db(transaction=True)
def test_outside_transaction_refuses_a_manual_transaction_and_opens_none():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx, outside_transaction():
        pass
    assert ctx.captured_queries == []  # no BEGIN/COMMIT round trip per PSP call
    transaction.set_autocommit(False)
    try:
        with pytest.raises(RuntimeError), outside_transaction():
            pass
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
