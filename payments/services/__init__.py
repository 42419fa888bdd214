"""Public writes of the payments app."""

from payments.services.customers import customer_create
from payments.services.disputes import dispute_apply_event, dispute_submit_evidence
from payments.services.payments import (
    payment_cancel,
    payment_capture,
    payment_confirm,
    payment_create,
    payment_expire_authorizations,
)
from payments.services.recovery import attempt_recover, attempt_settlement_inquire, recovery_run
from payments.services.refunds import refund_create
from payments.services.webhooks import (
    payment_authentication_complete,
    psp_webhook_process,
    psp_webhook_process_due,
    psp_webhook_receive,
)

__all__ = [
    "attempt_recover",
    "attempt_settlement_inquire",
    "customer_create",
    "dispute_apply_event",
    "dispute_submit_evidence",
    "payment_authentication_complete",
    "payment_cancel",
    "payment_capture",
    "payment_confirm",
    "payment_create",
    "payment_expire_authorizations",
    "psp_webhook_process",
    "psp_webhook_process_due",
    "psp_webhook_receive",
    "recovery_run",
    "refund_create",
]
