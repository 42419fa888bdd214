from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # SQLite only: let Django's flush (test teardown) past the append-only DELETE triggers
        # (ledger/db.py). No effect on PostgreSQL.
        from django.db.backends.signals import connection_created

        from ledger.db import register_sqlite_function

        connection_created.connect(register_sqlite_function, dispatch_uid="ledger_sqlite_functions")
