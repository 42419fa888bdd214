"""Least-privilege database roles on PostgreSQL (docs/deploy.md "Database roles",
docs/decisions/database-roles.md).

Two roles: the *owner* runs `migrate` and owns every table, sequence and function; the *runtime*
role (web, worker, scheduler) owns nothing, is no superuser, and has only what
`runtime_grants()` lists. By default that is SELECT, INSERT, UPDATE, DELETE on each installed
model's table; an app narrows (or adds) tables with a `db_runtime_grants` mapping on its
AppConfig (table -> privileges), e.g. the ledger: journals and entries SELECT only. A privilege
may name columns (`"UPDATE (status)"`: that column only). TRUNCATE, REFERENCES and TRIGGER are
never granted. Sequences: USAGE and SELECT. Functions: none (EXECUTE is revoked from PUBLIC where
it matters) but those an app lists in `db_runtime_functions` (names; every overload in the schema),
e.g. the ledger's SECURITY DEFINER posting functions, its only write door. Platform code: it reads
these attributes from the app configs and imports no domain app.
"""

from __future__ import annotations

import re

from django.apps import apps

DEFAULT_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
ALLOWED_PRIVILEGES = frozenset(DEFAULT_PRIVILEGES)
# Tables Django itself keeps that no app model names (read by `showmigrations`/`migrate --check`).
EXTRA_TABLES = {"django_migrations": ("SELECT",)}
# "UPDATE" or "UPDATE (col, col)"
_PRIVILEGE = re.compile(r"^([A-Z]+)(?:\s*\(\s*([a-z_][a-z0-9_]*(?:\s*,\s*[a-z_][a-z0-9_]*)*)\s*\))?$")


def _parse(privilege: str) -> tuple[str, tuple[str, ...]]:
    """("UPDATE", ("status",)) for "UPDATE (status)"; ("SELECT", ()) for "SELECT"."""
    match = _PRIVILEGE.match(privilege.strip())
    if match is None:
        raise ValueError(f"not a privilege: {privilege!r}")
    columns = tuple(c.strip() for c in match.group(2).split(",")) if match.group(2) else ()
    return match.group(1), columns


def runtime_grants() -> dict[str, tuple[str, ...]]:
    """table -> privileges of the runtime role, for every installed app."""
    grants: dict[str, tuple[str, ...]] = dict(EXTRA_TABLES)
    for app_config in apps.get_app_configs():
        for model in app_config.get_models(include_auto_created=True):
            meta = model._meta
            if meta.managed and not meta.proxy and not meta.swapped:
                grants[meta.db_table] = DEFAULT_PRIVILEGES
        for table, privileges in getattr(app_config, "db_runtime_grants", {}).items():
            bad = {p for p in privileges if _parse(p)[0] not in ALLOWED_PRIVILEGES}
            if bad:
                raise ValueError(f"{app_config.label}.db_runtime_grants[{table!r}]: not grantable here: {sorted(bad)}")
            grants[table] = tuple(privileges)
    return grants


def runtime_functions() -> tuple[str, ...]:
    """Names of the functions the runtime role may EXECUTE, for every installed app."""
    names: list[str] = []
    for app_config in apps.get_app_configs():
        names.extend(getattr(app_config, "db_runtime_functions", ()))
    return tuple(sorted(set(names)))


class RoleError(Exception):
    """The role cannot be (or need not be) granted: missing, a superuser, or an owner."""


def grant_runtime_role(connection, role: str) -> dict[str, tuple[str, ...]]:
    """Give `role` exactly the runtime privileges on this database's tables (of the connection's
    schema) and sequences: everything it had there is revoked first, in the same transaction, so a
    second run changes nothing and a narrowed grant takes effect. Run as the owner, after every
    `migrate` (new tables get nothing until then). Returns what was granted, table -> privileges,
and function signature -> ("EXECUTE",)."""
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
        # no objects of its own (one could shadow a function the SECURITY DEFINER functions call)
        cursor.execute(f"REVOKE CREATE ON SCHEMA {qn(schema)} FROM {r}")
        # (a table's REVOKE ALL takes its column privileges too)
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {qn(schema)} FROM {r}")
        cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {qn(schema)} FROM {r}")
        cursor.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {qn(schema)} FROM {r}")
        granted = {}
        for table in sorted(tables & wanted.keys()):
            privileges = []
            for privilege in wanted[table]:
                name, columns = _parse(privilege)
                privileges.append(f"{name} ({', '.join(qn(c) for c in columns)})" if columns else name)
            if privileges:  # () = nothing on that table
                cursor.execute(f"GRANT {', '.join(privileges)} ON TABLE {qn(table)} TO {r}")
            granted[table] = wanted[table]
        for sequence in sequences:
            cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {qn(sequence)} TO {r}")
        cursor.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace = current_schema()::regnamespace AND p.proname = ANY (%s) ORDER BY 1",
            [list(runtime_functions())],
        )
        for (signature,) in cursor.fetchall():
            cursor.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {r}")
            granted[signature] = ("EXECUTE",)
    return granted
