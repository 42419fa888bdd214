from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    default_auto_field = "django.db.models.BigAutoField"
    # What the runtime database role may do to the ledger's tables (payera/core/db_roles.py,
    # `manage.py db_grant_app_role`): read journals and entries, create accounts (with an empty
    # projection: a trigger) and freeze them (their status column only; also what SELECT ... FOR
    # UPDATE needs). Journals, entries and projections are written only by the posting functions,
    # SECURITY DEFINER as payera_ledger_writer (ledger/sql/postgresql.sql section 6), which it may
    # EXECUTE. Nothing on ledger_journal_check (the entry trigger's rows, written as the writer).
    db_runtime_grants = {
        "ledger_journal": ("SELECT",),
        "ledger_entry": ("SELECT",),
        "ledger_account": ("SELECT", "INSERT", "UPDATE (status)"),
        "ledger_journal_check": (),
    }
    db_runtime_functions = ("ledger_post_one", "ledger_post_batch", "ledger_post_batch_atomic")

    def ready(self) -> None:
        # SQLite only: let Django's flush (test teardown) past the append-only DELETE triggers
        # (ledger/db.py). No effect on PostgreSQL.
        from django.db.backends.signals import connection_created

        from ledger import checks  # noqa: F401 - registers the system checks
        from ledger.db import register_sqlite_function

        connection_created.connect(register_sqlite_function, dispatch_uid="ledger_sqlite_functions")
