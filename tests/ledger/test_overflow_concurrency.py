"""Review r19e: two threads on the guarded path (ledger_post_batch_atomic's overflow rerun) over the
same accounts, real threads on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from ledger import engine, services
from ledger.types import JournalRequest, PostStatus, transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]

LINE = 2**62 - 1


@pytest.mark.parametrize("plain", [False, True])
def test_two_overflowing_batches_on_crossed_accounts_neither_deadlock_nor_lose_a_journal(plain):
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    a, b, c, d = (make_account("mer_oc" + tag, code) for code in ("a", "b", "c", "d"))
    full = [make_account("mer_oc" + tag, f"full{n}") for n in (1, 2)]
    sinks = [make_account("mer_oc" + tag, f"sink{n}") for n in (1, 2)]
    for key, sink in zip(full, sinks, strict=True):  # each at the top of the range: one more unit overflows
        for n in (1, 2):
            services.journal_post(
                reference=f"fill{n}:{key.code}:{tag}",
                lines=transfer_lines(debit=key, credit=sink, amount=LINE),
                occurred_at=now,
            )
        services.journal_post(
            reference=f"fill3:{key.code}:{tag}", lines=transfer_lines(debit=key, credit=sink, amount=1), occurred_at=now
        )
    rounds = 40
    errors: list[BaseException] = []
    results: dict[tuple[int, int], list] = {}
    barrier = threading.Barrier(2)
    retries = engine.stats["retries"]

    def batch(t: int, r: int) -> list[JournalRequest]:
        first, second = ((a, b), (c, d)) if t == 0 else ((c, d), (a, b))
        if plain:
            first, second = second, first
        return [
            JournalRequest(
                reference=f"x{t}:{r}:1:{tag}",
                lines=transfer_lines(debit=first[0], credit=first[1], amount=1),
                occurred_at=now,
            ),
            JournalRequest(
                reference=f"x{t}:{r}:2:{tag}",
                lines=transfer_lines(debit=second[0], credit=second[1], amount=1),
                occurred_at=now,
            ),
            JournalRequest(
                reference=f"x{t}:{r}:3:{tag}", lines=transfer_lines(debit=full[t], credit=d, amount=1), occurred_at=now
            ),
        ]

    def run(t: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait(30)
                if t == 1 and plain:
                    results[t, r] = [
                        services.journal_post(
                            reference=f"y:{r}:{tag}", lines=transfer_lines(debit=a, credit=c, amount=1), occurred_at=now
                        )
                    ]
                else:
                    results[t, r] = services.journal_post_many(batch(t, r), atomic=False)
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    for key, res in results.items():
        if plain and key[0] == 1:
            assert [x.status for x in res] == [PostStatus.CREATED], (key, res)
            continue
        assert [x.status for x in res] == [PostStatus.CREATED, PostStatus.CREATED, PostStatus.OVERFLOW], (key, res)
    assert engine.stats["retries"] == retries, "a deadlock was retried"
    n = 2 * rounds
    from ledger.selectors import account_balance

    if plain:
        assert [account_balance(key=k).posted for k in (a, b, c, d)] == [n, -rounds, rounds - rounds, -rounds]
    else:
        assert [account_balance(key=k).posted for k in (a, b, c, d)] == [n, -n, n, -n]
    report = ledger_verify()
    assert report.ok, report
