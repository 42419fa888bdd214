from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payera.audit import registry
        from payera.backoffice.panels import Panel, panel_register
        from payments import checks  # noqa: F401 - registers the system checks
        from payments import models as m
        from payments.panels import stuck_panel

        # Card numbers and IBANs never reach the trail: their ciphertext fields (and anything whose
        # name says secret/token/pan/cvc) are excluded by the registry itself, and listed here too.
        registry.register(m.PaymentMethod, exclude_fields=["pan_ciphertext", "iban_ciphertext", "psp_tokens"])
        registry.register(m.Payment, exclude_fields=["inflight", "inflight_at"])
        registry.register(m.Refund)
        registry.register(m.Dispute)
        registry.register(m.DeclineCode)
        registry.register(m.Customer)
        registry.register(m.Booking, exclude_fields=["inflight", "inflight_at"])
        registry.register(m.RoutingRule)
        registry.register(m.BinRange)
        panel_register(Panel(
            key="payments.stuck", title="Stuck past their SLA", order=65,
            permissions=("payments.view_stuckitem",), compute=stuck_panel,
            description="Payments, operations and PSP webhooks in a non-final state longer than its SLA.",
        ))
        registry.register(m.Subscription)
        # its merchant is its payment method's: staff of that merchant see its records (payera.audit.registry)
        registry.register(m.PaymentMethodCredential, exclude_fields=["psp_token"],
                          merchant_field="payment_method__merchant")
        # a mandate's status (revoked, or ended by a return code) and why: the evidence of who may be debited
        registry.register(m.SepaMandate, include_fields=["status", "inactive_reason", "inactive_at"])
