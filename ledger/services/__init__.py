"""The ledger's write door. Other apps import from here (and from selectors and types)."""

from ledger.services.accounts import account_get_or_create, account_set_status
from ledger.services.journals import journal_post, journal_post_many, journal_reverse
from ledger.services.maintenance import ledger_rebuild
from ledger.services.pending import pending_create, pending_expire_due, pending_post, pending_void

__all__ = [
    "account_get_or_create",
    "account_set_status",
    "journal_post",
    "journal_post_many",
    "journal_reverse",
    "ledger_rebuild",
    "pending_create",
    "pending_expire_due",
    "pending_post",
    "pending_void",
]
