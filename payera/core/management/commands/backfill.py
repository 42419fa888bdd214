"""`manage.py backfill APP MIGRATION`: run a batched backfill migration's backfills again, after it
was applied (docs/runbooks/backfill.md): for the rows that the old code, still running while the
migration ran, left pending. Idempotent: only pending rows are filled, each batch committed on its
own; run it as often as needed."""

from __future__ import annotations

from importlib import import_module

from django.core.management import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS
from django.db.migrations.loader import MigrationLoader

from payera.core.backfill import run_backfill


class Command(BaseCommand):
    help = "Run a batched backfill migration's backfills again (only the rows still pending)."

    def add_arguments(self, parser):
        parser.add_argument("app_label", help="e.g. payments")
        parser.add_argument("migration", help="the migration's full name, e.g. 0025_refund_times_backfill")
        parser.add_argument("--batch-size", type=int, help="rows per batch (default: the migration's BATCH_SIZE)")
        parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(
        self, *args, app_label: str, migration: str, batch_size: int | None, pause: float, database: str, **options
    ):
        # only an installed app's migration, as `migrate` loads them: the names never reach an import
        found = MigrationLoader(None, ignore_no_migrations=True).disk_migrations.get((app_label, migration))
        if found is None:
            raise CommandError(f"no migration {app_label}.{migration}")
        module = import_module(type(found).__module__)
        backfills = getattr(module, "BACKFILLS", None)
        if not backfills:
            raise CommandError(f"{app_label}.{migration} is not a batched backfill (it has no BACKFILLS)")
        size = module.BATCH_SIZE if batch_size is None else batch_size
        if size < 1:
            raise CommandError(f"--batch-size must be at least 1, not {size}")
        for backfill in backfills:
            result = run_backfill(backfill, batch_size=size, using=database, pause=pause)
            self.stdout.write(f"{backfill.table}: {result.rows} rows in {result.batches} batches")
