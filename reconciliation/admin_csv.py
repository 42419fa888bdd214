"""One CSV export action for every finance table of the admin (docs/backoffice.md, "CSV exports").

    actions = [csv_export_action("export_csv", RUN_COLUMNS, "settlement-runs")]

builds an admin action named `export_csv` that writes the selected rows' `columns` through
`admin_reports.csv_response` (a header row, then one line per row; text cells that a spreadsheet
would read as a formula are made inert). `rows(queryset)` turns the selection into dicts or
`values()` rows (default: the queryset's own columns): the items of the selected runs, the outcome
table of the selected reconciliation runs... The queryset is the admin's, so merchant limits and
the action's permission (`has_export_permission` of the admin) apply as to every action.
Amounts are minor units, as stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.contrib import admin
from django.utils import timezone

from reconciliation.report_tables import (
    AGING_COLUMNS,
    OUTCOME_COLUMNS,
    RECEIVABLE_COLUMNS,
    run_aging_rows,
    run_outcome_rows,
    run_receivable_rows,
)

Rows = Callable[[object], Iterable]


def csv_export_action(
    name: str,
    columns: tuple[str, ...],
    filename: str,
    *,
    description: str = "",
    rows: Rows | None = None,
    permission: str = "export",
):
    def action(modeladmin, request, queryset):
        from reconciliation.admin_reports import csv_response  # admin_reports imports this module

        data = rows(queryset) if rows is not None else queryset.values(*columns).iterator()
        return csv_response(data, columns, f"{filename}-{timezone.now():%Y%m%d%H%M%S}.csv")

    action.__name__ = name
    return admin.action(description=description or "Export the selected rows (CSV)", permissions=[permission])(action)


# The run page's tables (reconciliation runs' changelist): outcomes of the selected runs, and the
# receivable check and aging of their PSPs.
RUN_TABLE_EXPORTS = (
    csv_export_action(
        "export_outcomes",
        OUTCOME_COLUMNS,
        "reconciliation-outcomes",
        rows=run_outcome_rows,
        description="Export the outcome table of the selected runs (CSV)",
    ),
    csv_export_action(
        "export_receivable",
        RECEIVABLE_COLUMNS,
        "psp-receivable",
        rows=run_receivable_rows,
        description="Export the receivable check of the selected runs' PSPs (CSV)",
    ),
    csv_export_action(
        "export_aging",
        AGING_COLUMNS,
        "psp-receivable-aging",
        rows=run_aging_rows,
        description="Export the receivable aging of the selected runs' PSPs (CSV)",
    ),
)
