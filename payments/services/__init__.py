"""Public writes of the payments app."""

from payments.services.customers import customer_create
from payments.services.disputes import dispute_apply_event, dispute_submit_evidence
from payments.services.payment_methods import payment_method_detach
from payments.services.payments import (
    payment_cancel,
    payment_capture,
    payment_confirm,
    payment_create,
    payment_expire_authorizations,
)
from payments.services.recovery import (
    attempt_recover,
    attempt_settlement_inquire,
    dispute_settlement_inquire,
    recovery_run,
)
from payments.services.redirects import payment_expire_redirects
from payments.services.refunds import refund_create
from payments.services.stuck import stuck_open_counts, stuck_sweep
from payments.services.subscriptions import (
    subscription_cancel,
    subscription_charge,
    subscription_create,
    subscription_create_resume,
    subscription_update,
    subscriptions_run,
)
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
    "dispute_settlement_inquire",
    "dispute_submit_evidence",
    "payment_authentication_complete",
    "payment_cancel",
    "payment_capture",
    "payment_confirm",
    "payment_create",
    "payment_expire_authorizations",
    "payment_expire_redirects",
    "payment_method_detach",
    "psp_webhook_process",
    "psp_webhook_process_due",
    "psp_webhook_receive",
    "recovery_run",
    "refund_create",
    "stuck_open_counts",
    "stuck_sweep",
    "subscription_cancel",
    "subscription_charge",
    "subscription_create",
    "subscription_create_resume",
    "subscription_update",
    "subscriptions_run",
]
