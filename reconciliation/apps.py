from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payera.audit import registry
        from payera.backoffice.panels import Panel, panel_register
        from payera.core.metrics import state_gauges_register
        from reconciliation import checks  # noqa: F401 - registers the system checks
        from reconciliation.models import (
            Discrepancy,
            DiscrepancyApproval,
            MerchantPayoutSettings,
            Payout,
            ReconciliationRun,
            SettlementRun,
        )
        from reconciliation.panels import payouts_panel, pull_failing_gauges, settlement_pull_panel

        registry.register(Payout)
        registry.register(SettlementRun)
        registry.register(ReconciliationRun, exclude_fields=["summary", "row_errors", "rows_loaded"])
        registry.register(Discrepancy)
        registry.register(DiscrepancyApproval)
        registry.register(MerchantPayoutSettings, exclude_fields=["bank_account_ciphertext"])
        panel_register(
            Panel(
                key="reconciliation.payouts",
                title="Payouts",
                order=70,
                permissions=("reconciliation.view_payout",),
                compute=payouts_panel,
            )
        )
        panel_register(
            Panel(
                key="reconciliation.settlement_pull",
                title="Settlement reports",
                order=71,
                permissions=("reconciliation.view_reconciliationrun",),
                compute=settlement_pull_panel,
                description="Days whose pulled PSP report keeps failing to import.",
            )
        )
        state_gauges_register(pull_failing_gauges)
