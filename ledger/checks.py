"""System check: the application's database role cannot switch the ledger's guards off.

The append-only triggers, the balance check and the limits hold against any ordinary role. A
superuser bypasses them (TRUNCATE, `SET session_replication_role = replica`), and so does the
owner of the ledger's tables or functions (ALTER TABLE ... DISABLE TRIGGER, CREATE OR REPLACE of a
trigger function), and a role with CREATEROLE can make itself a member of the owner (PostgreSQL
15). The runtime processes must therefore connect as a role that is none of these
(docs/deploy.md "Database roles"). Nor may it write the ledger but through the posting functions
(SECURITY DEFINER as payera_ledger_writer, ledger/sql/postgresql.sql section 6): no INSERT, UPDATE,
DELETE or TRUNCATE on journals and entries, no UPDATE of an account's projection (E105; it would
let the role write a balanced but made-up journal or a balance that ledger_verify finds only
afterwards), and no CREATE on the schema (an object of its own there could shadow one the
SECURITY DEFINER functions call). A deploy check (`manage.py check --deploy`); production processes
also run it at start (payera.core.startup) and refuse to start on an error. `migrate` runs as the
owner and does not run deploy checks.
"""

from __future__ import annotations

from django.core.checks import Error, register
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from payera.core.startup import RUNTIME_TAG

LEDGER_TABLES = ("ledger_account", "ledger_journal", "ledger_entry", "ledger_journal_check")
_DOCS = "Connect the web, worker and scheduler as the runtime role (docs/deploy.md, 'Database roles')."

_ROLE_SQL = """
SELECT r.rolname, r.rolsuper, r.rolcreaterole,
       (SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}') FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY (%s)
           AND pg_has_role(r.oid, c.relowner, 'MEMBER')),
       (SELECT coalesce(array_agg(DISTINCT p.proname::text ORDER BY p.proname::text), '{}') FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'ledger\\_%%'
           AND pg_has_role(r.oid, p.proowner, 'MEMBER')),
       (SELECT coalesce(array_agg(t.what ORDER BY t.what), '{}') FROM (
            SELECT c.relname || ' (' || priv || ')' AS what
              FROM pg_class c, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) priv
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ('ledger_journal', 'ledger_entry')
               AND has_table_privilege(r.oid, c.oid, priv)
            UNION ALL
            SELECT 'ledger_account (' || priv || ')'
              FROM pg_class c, unnest(ARRAY['DELETE', 'TRUNCATE']) priv
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'ledger_account'
               AND has_table_privilege(r.oid, c.oid, priv)
            UNION ALL
            SELECT 'ledger_account.' || a.attname || ' (UPDATE)'
              FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'ledger_account'
               AND a.attname IN ('balance', 'debits_pending', 'credits_pending', 'version')
               AND has_column_privilege(r.oid, c.oid, a.attnum, 'UPDATE')
            UNION ALL
            -- the posting functions' pinned search_path names this schema: whoever may create
            -- objects there could shadow a function they call (a closer overload)
            SELECT 'schema ' || current_schema() || ' (CREATE)'
             WHERE has_schema_privilege(r.oid, current_schema(), 'CREATE')) t)
  FROM pg_roles r
 WHERE r.rolname IN (session_user, current_user)
 ORDER BY r.rolname
"""


def runtime_role_problems(connection) -> list[Error]:
    """What is wrong with the role `connection` logs in (and acts) as, for a runtime process."""
    if connection.vendor != "postgresql":
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute(_ROLE_SQL, [list(LEDGER_TABLES)])
            rows = cursor.fetchall()
    except DatabaseError as exc:
        return [Error(f"Could not check the database role: {exc}", hint=_DOCS, id="ledger.E104")]
    problems = []
    for name, is_super, create_role, tables, functions, writes in rows:
        if is_super:
            problems.append(Error(
                f"The database role {name!r} is a superuser: it can TRUNCATE the ledger, turn its triggers off"
                " (SET session_replication_role = replica) and rewrite entries.",
                hint=_DOCS, id="ledger.E101"))
        elif tables or functions:
            owned = ", ".join([*tables, *(f"{f}()" for f in functions)])
            problems.append(Error(
                f"The database role {name!r} owns (or is a member of the owner of) {owned}: an owner can"
                " ALTER TABLE ... DISABLE TRIGGER or replace a trigger function and rewrite entries."
                " Migrations run as the owner; the application must not.",
                hint=_DOCS, id="ledger.E102"))
        elif create_role:
            problems.append(Error(
                f"The database role {name!r} has CREATEROLE: it can grant itself the owner's role.",
                hint=_DOCS, id="ledger.E103"))
        elif writes:
            problems.append(Error(
                f"The database role {name!r} may write the ledger past its posting functions: {', '.join(writes)}."
                " It could insert a balanced but made-up journal or change a balance; journals, entries and"
                " projections are written only by the posting functions (SECURITY DEFINER).",
                hint="Run `manage.py db_grant_app_role ROLE` as the owner after migrate; grant nothing more"
                " (docs/runbooks/database-roles.md).", id="ledger.E105"))
    return problems


@register("security", RUNTIME_TAG, deploy=True)
def check_runtime_database_role(app_configs=None, databases=None, **kwargs):
    """`manage.py check --deploy` (and every production process at start): the default database's
    role is no superuser and owns none of the ledger's tables or functions."""
    return runtime_role_problems(connections[DEFAULT_DB_ALIAS])
