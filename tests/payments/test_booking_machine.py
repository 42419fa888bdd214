"""Hypothesis stateful test over the booking machine (issue 10): random sequences of create
(approved, declined, 3-D Secure), confirm, complete (whole or part), cancel, the scheduler's
expiry after a jump in time and recovery, through the services and the real alpha sandbox, keep
every invariant after every step:
- the merchant's escrow in the ledger holds exactly the confirmed bookings' captures net of fees;
- released + refunded never exceed what was captured, per booking;
- bookings move only along the booking machine's graph (django-fsm's own transitions);
- at the end: the ledger balanced and equal to its replay (`ledger_verify`).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from ledger.selectors import balance_get
from ledger.verify import ledger_verify
from payera.core.errors import PayeraError
from payments.models import Booking, BookingStatus, PaymentEvent
from payments.services import recovery_run
from payments.services.bookings import (
    booking_cancel,
    booking_complete,
    booking_confirm,
    booking_create,
    booking_expire_due,
)
from tests.merchants.factories import MerchantFactory

CARDS = ["4242424242424242"] * 4 + ["4000000000000002", "4000000000003220"]
EDGES = {
    (src, t.target)
    for t in Booking._meta.get_field("status").get_all_transitions(Booking)
    for src in ([t.source] if isinstance(t.source, str) else t.source)
}


class BookingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.sid = transaction.savepoint()
        self.merchant = MerchantFactory(connectors=["alpha"])
        self.ids: list[str] = []

    def teardown(self):
        try:
            report = ledger_verify()
            assert report.ok, report.problems
        finally:
            transaction.savepoint_rollback(self.sid)

    def _pick(self, i: int) -> Booking:
        return Booking.objects.get(pk=self.ids[i % len(self.ids)])

    def _try(self, fn, **kwargs) -> None:
        try:
            fn(merchant=self.merchant, **kwargs)
        except PayeraError as exc:  # a refused transition is a clear 4xx, never a 5xx
            assert 400 <= exc.http_status < 500, (exc.code, exc.message)

    @rule(card=st.sampled_from(CARDS), amount=st.integers(min_value=100, max_value=5000))
    def create(self, card, amount):
        booking = booking_create(
            merchant=self.merchant, amount=amount, currency="EUR", reference=f"stay-{uuid.uuid4().hex[:8]}",
            hold_expires_at=int((timezone.now() + dt.timedelta(hours=1)).timestamp()),
            payment_method_data={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034,
                                                          "cvc": "123"}},
        )
        self.ids.append(booking.id)

    @precondition(lambda self: self.ids)
    @rule(i=st.integers(min_value=0, max_value=50))
    def confirm(self, i):
        self._try(booking_confirm, booking_id=self._pick(i).id)

    @precondition(lambda self: self.ids)
    @rule(i=st.integers(min_value=0, max_value=50), share=st.one_of(st.none(), st.integers(min_value=1, max_value=100)))
    def complete(self, i, share):
        b = self._pick(i)
        amount = None if share is None else max(1, b.amount_captured * share // 100)
        self._try(booking_complete, booking_id=b.id, amount=amount)

    @precondition(lambda self: self.ids)
    @rule(i=st.integers(min_value=0, max_value=50))
    def cancel(self, i):
        self._try(booking_cancel, booking_id=self._pick(i).id)

    @precondition(lambda self: self.ids)
    @rule()
    def time_passes_and_holds_expire(self):
        booking_expire_due(now_=timezone.now() + dt.timedelta(hours=2))

    @precondition(lambda self: self.ids)
    @rule()
    def recover(self):
        recovery_run(force=True)

    @invariant()
    def escrow_holds_exactly_the_confirmed_bookings(self):
        confirmed = Booking.objects.filter(merchant=self.merchant, status=BookingStatus.CONFIRMED)
        expected = sum(b.amount_captured - b.fee for b in confirmed)
        escrow = {m.currency: m.amount for m in balance_get(owner=self.merchant.id).escrow}
        assert escrow.get("EUR", 0) == expected, (escrow, expected)

    @invariant()
    def never_more_out_than_in(self):
        for b in Booking.objects.filter(merchant=self.merchant):
            assert 0 <= b.amount_refunded <= b.amount_captured <= b.amount, b.id
            assert b.amount_released <= b.amount_captured - b.fee, b.id

    @invariant()
    def bookings_move_only_along_the_graph(self):
        for src, dst in PaymentEvent.objects.filter(object_id__in=self.ids, object_type="booking").values_list(
            "from_status", "to_status"
        ):
            assert (src, dst) in EDGES, (src, dst)


@pytest.mark.django_db
def test_booking_state_machine(psp_settings):
    run_state_machine_as_test(
        BookingMachine,
        settings=settings(
            max_examples=int(os.environ.get("BOOKINGS_HYPOTHESIS_EXAMPLES", 8)),
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


@pytest.mark.django_db
def test_booking_transitions_are_logged_so_the_graph_check_can_fail(psp_settings):
    """The graph invariant reads the transition log: it must hold booking rows."""
    merchant = MerchantFactory(connectors=["alpha"])
    b = booking_create(merchant=merchant, amount=1000, currency="EUR", reference="stay-log",
                       hold_expires_at=int((timezone.now() + dt.timedelta(hours=1)).timestamp()),
                       payment_method_data={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                                     "exp_year": 2034, "cvc": "123"}})
    booking_confirm(merchant=merchant, booking_id=b.id)
    moves = set(PaymentEvent.objects.filter(object_id=b.id, object_type="booking").values_list("from_status",
                                                                                                "to_status"))
    assert ("pending", "held") in moves and ("held", "confirmed") in moves
