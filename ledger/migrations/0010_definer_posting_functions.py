"""The posting functions run as their own NOLOGIN role, payera_ledger_writer (SECURITY DEFINER, search_path
pinned, EXECUTE revoked from PUBLIC); the runtime role then needs neither INSERT on journals and
entries nor UPDATE of the projections (docs/decisions/database-roles.md, "Session 11"). A new
account starts with an empty projection, and a shard row is one of its hot parent's (triggers). The entry statement trigger skips the writer's
INSERTs; the functions refuse what it refused (zero amounts, unbalanced lines, an account row of
another currency). PostgreSQL only; no schema change.

Creates the role when the migrating role may (a superuser, as in CI, or CREATEROLE); otherwise it
must exist and the migrating role be a member of it (scripts/postgres-init; by hand on an existing
install: docs/runbooks/database-roles.md). Run `manage.py db_grant_app_role` after it (the runtime
role loses INSERT on journals and entries and the projection UPDATE, and gains EXECUTE).
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions, reload_postgresql_invariants

UNDO = """
DROP TRIGGER IF EXISTS ledger_entry_checked ON ledger_entry;
CREATE TRIGGER ledger_entry_checked AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS ledger_new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_entries();
DROP TRIGGER IF EXISTS ledger_account_new_empty ON ledger_account;
DROP FUNCTION IF EXISTS ledger_account_refuse_projection();
DROP TRIGGER IF EXISTS ledger_account_shard_valid ON ledger_account;
DROP FUNCTION IF EXISTS ledger_account_refuse_shard();
DO $undo$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.pronamespace = current_schema()::regnamespace
                 AND p.proname IN ('ledger_post_one', 'ledger_post_batch', 'ledger_post_batch_atomic') LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER RESET search_path', fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn, current_user);
    END LOOP;
END $undo$;
"""


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_invariants(apps, schema_editor)
        reload_postgresql_functions(apps, schema_editor)


def undo(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNDO, params=None)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0009_created_at_after_locks")]
    operations = [migrations.RunPython(apply, undo, elidable=False)]
