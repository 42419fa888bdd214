"""Hypothesis stateful test: random postings, batches, reversals, pending post/void and expiry,
checked step by step against a plain-Python model of the ledger, on both engines."""

import itertools
import os
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger import engine as ledger_engine
from ledger import selectors, services
from ledger.errors import JournalReferenceConflictError, LimitExceededError, PendingStateError
from ledger.models import Account
from ledger.types import AccountKey, AccountType, JournalRequest, PostingLine, PostStatus
from ledger.verify import ledger_verify

# name -> (currency, type, flags)
ACCOUNTS = {
    "wallet": ("EUR", AccountType.LIABILITY, {"debits_must_not_exceed_credits": True}),
    "cash": ("EUR", AccountType.ASSET, {"credits_must_not_exceed_debits": True}),
    "a": ("EUR", AccountType.ASSET, {}),
    "b": ("EUR", AccountType.LIABILITY, {}),
    "hot": ("EUR", AccountType.REVENUE, {"hot": True}),
    "u1": ("USD", AccountType.ASSET, {}),
    "u2": ("USD", AccountType.LIABILITY, {}),
}
EUR = [n for n, v in ACCOUNTS.items() if v[0] == "EUR"]
USD = [n for n, v in ACCOUNTS.items() if v[0] == "USD"]

pair = st.one_of(
    st.lists(st.sampled_from(EUR), min_size=2, max_size=2, unique=True),
    st.lists(st.sampled_from(USD), min_size=2, max_size=2, unique=True),
)
amount = st.integers(min_value=1, max_value=500)
transfer = st.tuples(pair, amount)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.sid = transaction.savepoint()
        self.owner = "mer_" + uuid.uuid4().hex[:16]
        self.key = {n: AccountKey(self.owner, n, cur) for n, (cur, _, _) in ACCOUNTS.items()}
        self.posted = defaultdict(int)
        self.dp = defaultdict(int)
        self.cp = defaultdict(int)
        self.journals: dict[str, tuple] = {}  # reference -> (lines, journal_id)
        self.reversed: set[int] = set()
        self.pendings: dict[str, dict] = {}
        self.counter = itertools.count()
        self.now = datetime.now(UTC)

    @initialize()
    def create_accounts(self):
        for name, (_, type_, flags) in ACCOUNTS.items():
            services.account_get_or_create(key=self.key[name], type=type_, **flags)

    def teardown(self):
        try:
            report = ledger_verify()
            assert report.ok, report.problems
        finally:
            transaction.savepoint_rollback(self.sid)

    # --- the model ------------------------------------------------------------------------
    def _lines(self, t):
        (debit, credit), amt = t
        return (PostingLine.debit(self.key[debit], amt), PostingLine.credit(self.key[credit], amt))

    def _violates(self, posted, dp, cp) -> frozenset[str]:
        """Every limit the state breaks (the engine reports one of them)."""
        found = set()
        for name, (_, _, flags) in ACCOUNTS.items():
            k = self.key[name]
            if flags.get("debits_must_not_exceed_credits") and posted[k] + dp[k] > 0:
                found.add("exceeds_credits")
            if flags.get("credits_must_not_exceed_debits") and cp[k] - posted[k] > 0:
                found.add("exceeds_debits")
        return frozenset(found)

    def _apply_posted(self, lines, posted):
        for line in lines:
            posted[line.account] += line.amount

    def _try_post(self, lines, state=None):
        posted, dp, cp = state or (self.posted, self.dp, self.cp)
        trial = defaultdict(int, posted)
        self._apply_posted(lines, trial)
        bad = self._violates(trial, dp, cp)
        if not bad:
            posted.clear()
            posted.update(trial)
        return bad

    def _pending_effect(self, lines, sign, dp, cp):
        for line in lines:
            if line.account == self.key["hot"]:
                continue
            if line.amount > 0:
                dp[line.account] += sign * line.amount
            else:
                cp[line.account] -= sign * line.amount

    # --- rules ----------------------------------------------------------------------------
    @rule(t=transfer, ref=st.integers(0, 15))
    def post(self, t, ref):
        reference = f"{self.owner}:p{ref}"
        lines = self._lines(t)
        if reference in self.journals:
            first_lines, jid = self.journals[reference]
            if sorted((x.account, x.amount) for x in first_lines) == sorted((x.account, x.amount) for x in lines):
                assert services.journal_post(reference=reference, lines=lines, occurred_at=self.now).journal_id == jid
            else:
                with pytest.raises(JournalReferenceConflictError):
                    services.journal_post(reference=reference, lines=lines, occurred_at=self.now)
            return
        expected = self._try_post(lines)
        if expected:
            with pytest.raises(LimitExceededError) as err:
                services.journal_post(reference=reference, lines=lines, occurred_at=self.now)
            assert err.value.status.value in expected
        else:
            result = services.journal_post(reference=reference, lines=lines, occurred_at=self.now)
            assert result.status is PostStatus.CREATED
            self.journals[reference] = (lines, result.journal_id)

    @rule(ts=st.lists(transfer, min_size=1, max_size=6), atomic=st.booleans())
    def batch(self, ts, atomic):
        reqs = [
            JournalRequest(reference=f"{self.owner}:b{next(self.counter)}", lines=self._lines(t), occurred_at=self.now)
            for t in ts
        ]
        trial = (defaultdict(int, self.posted), self.dp, self.cp)
        expected = [self._try_post(r.lines, trial) for r in reqs]
        if atomic:
            if any(expected):
                with pytest.raises(LimitExceededError):
                    services.journal_post_many(reqs, atomic=True)
                return
            results = services.journal_post_many(reqs, atomic=True)
        else:
            results = services.journal_post_many(reqs, atomic=False)
        for r, e in zip(results, expected, strict=True):
            assert r.status.value in (e or {"created"})
        self.posted = trial[0]
        for r, req in zip(results, reqs, strict=True):
            if r.created:
                self.journals[req.reference] = (req.lines, r.journal_id)

    @precondition(lambda self: self.journals)
    @rule(data=st.data())
    def reverse(self, data):
        reference = data.draw(st.sampled_from(sorted(self.journals)))
        lines, jid = self.journals[reference]
        mirror = tuple(PostingLine(x.account, -x.amount) for x in lines)
        rev_ref = f"{self.owner}:r{jid}"
        if jid in self.reversed:
            assert services.journal_reverse(journal_id=jid, reference=rev_ref, occurred_at=self.now).status is (
                PostStatus.EXISTS
            )
            return
        expected = self._try_post(mirror)
        if expected:
            with pytest.raises(LimitExceededError):
                services.journal_reverse(journal_id=jid, reference=rev_ref, occurred_at=self.now)
        else:
            services.journal_reverse(journal_id=jid, reference=rev_ref, occurred_at=self.now)
            self.reversed.add(jid)

    @rule(t=transfer, expired=st.booleans())
    def pending_create(self, t, expired):
        lines = self._lines(t)
        reference = f"{self.owner}:q{next(self.counter)}"
        dp, cp = defaultdict(int, self.dp), defaultdict(int, self.cp)
        self._pending_effect(lines, +1, dp, cp)
        expected = self._violates(self.posted, dp, cp)
        expires = self.now + (timedelta(seconds=-1) if expired else timedelta(hours=1))
        if expected:
            with pytest.raises(LimitExceededError):
                services.pending_create(reference=reference, lines=lines, occurred_at=self.now, expires_at=expires)
            return
        result = services.pending_create(reference=reference, lines=lines, occurred_at=self.now, expires_at=expires)
        self.dp, self.cp = dp, cp
        self.pendings[reference] = {"id": result.journal_id, "lines": lines, "expired": expired, "open": True}

    @precondition(lambda self: self.pendings)
    @rule(data=st.data(), part=st.integers(1, 100))
    def pending_post(self, data, part):
        reference = data.draw(st.sampled_from(sorted(self.pendings)))
        p = self.pendings[reference]
        debit, credit = p["lines"]
        amt = max(1, debit.amount * part // 100)
        lines = (PostingLine(debit.account, amt), PostingLine(credit.account, -amt))
        post_ref = f"{reference}:post{next(self.counter)}"
        if not p["open"] or p["expired"]:
            with pytest.raises(PendingStateError):
                services.pending_post(pending_id=p["id"], reference=post_ref, occurred_at=self.now, lines=lines)
            return
        services.pending_post(pending_id=p["id"], reference=post_ref, occurred_at=self.now, lines=lines)
        self._pending_effect(p["lines"], -1, self.dp, self.cp)
        assert not self._try_post(lines)
        p["open"] = False

    @precondition(lambda self: self.pendings)
    @rule(data=st.data())
    def pending_void(self, data):
        reference = data.draw(st.sampled_from(sorted(self.pendings)))
        p = self.pendings[reference]
        void_ref = f"{reference}:void{next(self.counter)}"
        if not p["open"]:
            with pytest.raises(PendingStateError):
                services.pending_void(pending_id=p["id"], reference=void_ref, occurred_at=self.now)
            return
        services.pending_void(pending_id=p["id"], reference=void_ref, occurred_at=self.now)
        self._pending_effect(p["lines"], -1, self.dp, self.cp)
        p["open"] = False

    @rule()
    def expire(self):
        due = [p for p in self.pendings.values() if p["open"] and p["expired"]]
        assert services.pending_expire_due() == len(due)
        for p in due:
            self._pending_effect(p["lines"], -1, self.dp, self.cp)
            p["open"] = False

    # --- invariants -----------------------------------------------------------------------
    @invariant()
    def projections_match_the_model(self):
        for name, key in self.key.items():
            if not Account.objects.filter(owner=key.owner, code=key.code, currency=key.currency).exists():
                continue
            got = selectors.account_balance(key=key)
            assert (got.posted, got.debits_pending, got.credits_pending) == (
                self.posted[key],
                self.dp[key],
                self.cp[key],
            ), name

    @invariant()
    def sums_to_zero_per_currency(self):
        for currency in ("EUR", "USD"):
            assert sum(self.posted[self.key[n]] for n in ACCOUNTS if ACCOUNTS[n][0] == currency) == 0
            total = sum(
                selectors.account_balance(key=self.key[n]).posted
                for n in ACCOUNTS
                if ACCOUNTS[n][0] == currency and Account.objects.filter(owner=self.owner, code=n, parent=None).exists()
            )
            assert total == 0


@pytest.mark.django_db
@pytest.mark.parametrize("engine", ["postgresql", "python"])
def test_ledger_state_machine(engine, settings_override):
    settings_override.LEDGER_ENGINE = engine
    before = dict(ledger_engine.stats)
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            # LEDGER_HYPOTHESIS_EXAMPLES=200 for a longer hunt by hand
            max_examples=int(os.environ.get("LEDGER_HYPOTHESIS_EXAMPLES", 20 if engine == "postgresql" else 8)),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    if engine == "postgresql":
        # single journals (posts, reversals, pending creations) went through ledger_post_one()
        assert ledger_engine.stats["lean"] > before["lean"]


@pytest.fixture
def settings_override(settings):
    return settings
