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
