"""`manage.py db_grant_app_role ROLE`: give the runtime database role exactly the privileges the
application needs (payera/core/db_roles.py), as the owner, after `migrate`. Idempotent: run it after
every migrate (compose.yaml's migrate service does)."""

from __future__ import annotations

import json

from django.core.management import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from payera.core.db_roles import RoleError, grant_runtime_role


class Command(BaseCommand):
    help = "Grant the runtime PostgreSQL role the privileges Payera needs; run as the owner after migrate."

    def add_arguments(self, parser):
        parser.add_argument("role", help="the runtime role (LOGIN, NOSUPERUSER, owns nothing)")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--json", action="store_true", help="print the grants as JSON")

    def handle(self, *args, role: str, database: str, **options):
        try:
            granted = grant_runtime_role(connections[database], role)
        except RoleError as exc:
            raise CommandError(str(exc)) from exc
        functions = {name: p for name, p in granted.items() if p == ("EXECUTE",)}
        tables = {name: p for name, p in granted.items() if name not in functions}
        if options["json"]:
            self.stdout.write(
                json.dumps({"role": role, "tables": tables, "functions": sorted(functions)}, sort_keys=True)
            )
        else:
            self.stdout.write(
                f"granted {role} the runtime privileges on {len(tables)} tables and {len(functions)} functions"
            )
