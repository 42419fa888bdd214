"""One lock helper per aggregate (STYLE: Saleor's lock_objects.py).

A merchant's settlement and payouts are serialized on its `MerchantPayoutSettings` row (created
on first use): two concurrent settlement or payout runs for one merchant take turns, and the
second sees what the first committed.
"""

from __future__ import annotations

from reconciliation.models import MerchantPayoutSettings, Payout


def merchant_payout_lock(merchant_id: str) -> MerchantPayoutSettings:
    """Inside a transaction: the merchant's payout settings row, created if missing, locked."""
    MerchantPayoutSettings.objects.get_or_create(merchant_id=merchant_id)
    return MerchantPayoutSettings.objects.select_for_update(of=("self",)).get(merchant_id=merchant_id)


def payout_lock(payout_id: str) -> Payout | None:
    return Payout.objects.select_for_update(of=("self",)).filter(pk=payout_id).first()


RECONCILE_PSP_LOCK = 0x72656370  # with the PSP's hash: a transaction advisory lock per PSP


def reconcile_psp_lock(psp: str) -> None:
    """Inside a transaction: the PSP's reconciliation writes take turns until the commit (the
    import's discrepancies and receivable check, the late heal's postings: reheal.py), so that
    neither reads the other's half-done work: a "missing at PSP" is opened for an item a line
    healed meanwhile names, or a line's money is posted twice. PostgreSQL only (SQLite has a single
    writer at a time anyway)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", [RECONCILE_PSP_LOCK, psp])


RECONCILE_START_LOCK = 0x72637374  # with the PSP's hash: a transaction advisory lock per PSP


def reconcile_start_lock(psp: str) -> None:
    """Inside a transaction: the PSP's imports record their runs one at a time (reconcile.py's
    `_run_start`), so each sees the run another import of an overlapping period has just recorded
    and answers busy. A lock of its own: the start never waits for a finish or a late heal (the
    PSP's lock above). PostgreSQL only (SQLite has a single writer at a time anyway)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", [RECONCILE_START_LOCK, psp])
