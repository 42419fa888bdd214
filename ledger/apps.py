from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    default_auto_field = "django.db.models.BigAutoField"
    # What the runtime database role may do to the ledger's tables (payera/core/db_roles.py,
    # `manage.py db_grant_app_role`): journals and entries are appended and read, never changed;
    # accounts are created and their projection updated; the balance check rows are inserted and
    # deleted by the entry triggers, which run as the posting role. No TRUNCATE anywhere.
    db_runtime_grants = {
        "ledger_journal": ("SELECT", "INSERT"),
        "ledger_entry": ("SELECT", "INSERT"),
        "ledger_account": ("SELECT", "INSERT", "UPDATE"),
        "ledger_journal_check": ("SELECT", "INSERT", "DELETE"),
    }

    def ready(self) -> None:
        # SQLite only: let Django's flush (test teardown) past the append-only DELETE triggers
        # (ledger/db.py). No effect on PostgreSQL.
        from django.db.backends.signals import connection_created

        from ledger import checks  # noqa: F401 - registers the system checks
        from ledger.db import register_sqlite_function

        connection_created.connect(register_sqlite_function, dispatch_uid="ledger_sqlite_functions")
