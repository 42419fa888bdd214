from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "payera.core"
    label = "core"

    def ready(self) -> None:
        # SQLite only: let Django's flush (test teardown) past the platform's append-only DELETE
        # triggers (payera/core/sqlite_flush.py). No effect on PostgreSQL.
        from django.db.backends.signals import connection_created

        from payera.core.sqlite_flush import register_sqlite_function

        connection_created.connect(register_sqlite_function, dispatch_uid="payera_sqlite_flush_function")
