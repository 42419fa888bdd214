"""Least-privilege database roles on PostgreSQL (docs/deploy.md "Database roles",
docs/decisions/database-roles.md).

Two roles: the *owner* runs `migrate` and owns every table, sequence and function; the *runtime*
role (web, worker, scheduler) owns nothing, is no superuser, and has only what
`runtime_grants()` lists. By default that is SELECT, INSERT, UPDATE, DELETE on each installed
model's table; an app narrows (or adds) tables with a `db_runtime_grants` mapping on its
AppConfig (table -> privileges), e.g. the ledger: journals and entries SELECT and INSERT only.
TRUNCATE, REFERENCES and TRIGGER are never granted. Sequences: USAGE and SELECT. Platform code:
it reads the mapping from the app configs and imports no domain app.
"""

from __future__ import annotations

from django.apps import apps

DEFAULT_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
ALLOWED_PRIVILEGES = frozenset(DEFAULT_PRIVILEGES)
# Tables Django itself keeps that no app model names (read by `showmigrations`/`migrate --check`).
EXTRA_TABLES = {"django_migrations": ("SELECT",)}


def runtime_grants() -> dict[str, tuple[str, ...]]:
    """table -> privileges of the runtime role, for every installed app."""
    grants: dict[str, tuple[str, ...]] = dict(EXTRA_TABLES)
    for app_config in apps.get_app_configs():
        for model in app_config.get_models(include_auto_created=True):
            meta = model._meta
            if meta.managed and not meta.proxy and not meta.swapped:
                grants[meta.db_table] = DEFAULT_PRIVILEGES
        for table, privileges in getattr(app_config, "db_runtime_grants", {}).items():
            bad = set(privileges) - ALLOWED_PRIVILEGES
            if bad:
                raise ValueError(f"{app_config.label}.db_runtime_grants[{table!r}]: not grantable here: {sorted(bad)}")
            grants[table] = tuple(privileges)
    return grants


class RoleError(Exception):
    """The role cannot be (or need not be) granted: missing, a superuser, or an owner."""


def grant_runtime_role(connection, role: str) -> dict[str, tuple[str, ...]]:
    """Give `role` exactly the runtime privileges on this database's tables (of the connection's
    schema) and sequences: everything it had there is revoked first, in the same transaction, so a
    second run changes nothing and a narrowed grant takes effect. Run as the owner, after every
    `migrate` (new tables get nothing until then). Returns what was granted, table -> privileges."""
    from django.db import transaction

    if connection.vendor != "postgresql":
        raise RoleError("database roles are a PostgreSQL matter; this database is " + connection.vendor)
    qn = connection.ops.quote_name
    wanted = runtime_grants()
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, pg_has_role(r.oid, current_user, 'MEMBER'), current_database(), current_schema()"
            " FROM pg_roles r WHERE r.rolname = %s",
            [role],
        )
        row = cursor.fetchone()
        if row is None:
            raise RoleError(f"no role {role!r}: create it first (CREATE ROLE ... LOGIN NOSUPERUSER)")
        is_super, is_owner, database, schema = row
        if is_super:
            raise RoleError(f"{role!r} is a superuser: it bypasses every grant; use an ordinary role")
        if is_owner:
            raise RoleError(f"{role!r} is (a member of) the role running this command, the owner: an owner can"
                            " switch the ledger's triggers off; use a role that owns nothing")
        cursor.execute(
            "SELECT c.relname, c.relkind FROM pg_class c"
            " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'S')"
        )
        relations = cursor.fetchall()
        tables = {name for name, kind in relations if kind != "S"}
        sequences = sorted(name for name, kind in relations if kind == "S")
        r = qn(role)
        cursor.execute(f"GRANT CONNECT ON DATABASE {qn(database)} TO {r}")
        cursor.execute(f"GRANT USAGE ON SCHEMA {qn(schema)} TO {r}")
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {qn(schema)} FROM {r}")
        cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {qn(schema)} FROM {r}")
        granted = {}
        for table in sorted(tables & wanted.keys()):
            cursor.execute(f"GRANT {', '.join(wanted[table])} ON TABLE {qn(table)} TO {r}")
            granted[table] = wanted[table]
        for sequence in sequences:
            cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {qn(sequence)} TO {r}")
    return granted
