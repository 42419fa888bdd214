"""The payments side of the back office (an app of its own, label `payments_backoffice`, so it
adds tables without touching the payments app's models and migrations):

- `RefundApproval`: four eyes on large staff refunds. A finance user asks for a refund above the
  merchant's threshold of the payment's currency (`Merchant.refund_approval_threshold_for`); it
  waits, `pending`, until a *different* finance user approves it (then, and only then, it is sent
  to the PSP through `payments.services.refund_create`) or someone rejects it. The database
  refuses an approval by its requester.
- `services`: the staff actions on payments (refund, cancel, re-run recovery), each checking the
  staff member's permission and merchant access itself, calling the payments services.
- `selectors.payment_story`: everything the payment page shows, in a bounded number of queries.
The payment admin itself is in `payments/admin.py`.
"""
