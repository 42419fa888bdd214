"""Django's automatic `_like` indexes on the tables every payment writes
(docs/decisions/per-payment-indexes.md).

On PostgreSQL Django gives every indexed varchar column (and every varchar primary key and
foreign key to one) a second, varchar_pattern_ops index, `<name>_like`, that only a case-sensitive
`LIKE 'x%'` / `__startswith` uses. For a field, `db_index=False` plus a plain `models.Index` drops
it and keeps the model state in step; for a primary key no field option does, so the migrations
drop it with `drop_pk_like_indexes`. The model state never knew of these indexes: nothing else changes.
"""

from __future__ import annotations

from django.db import migrations

_DROP = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT i.relname FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
              WHERE t.relname = ANY(%s) AND a.attname = 'id' AND x.indnatts = 1
                AND i.relname LIKE '%%\\_like'
    LOOP
        EXECUTE format('DROP INDEX %%I', r.relname);
    END LOOP;
END $$;
"""


def drop_pk_like_indexes(*tables: str) -> migrations.RunPython:
    """A migration operation dropping the `_like` twin of the `id` primary key of `tables`
    (PostgreSQL; elsewhere nothing). Reversed, it creates them again."""
    names = list(tables)

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            array = "ARRAY[" + ", ".join(schema_editor.quote_value(t) for t in names) + "]::name[]"
            schema_editor.execute(_DROP % array, params=None)

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for table in names:
                schema_editor.execute(
                    f"CREATE INDEX IF NOT EXISTS {table}_id_like ON {table} (id varchar_pattern_ops)", params=None)

    return migrations.RunPython(forward, backward, elidable=False)


def replace_field_index(app_label: str, model_name: str, name: str, field,
                        index=None) -> migrations.SeparateDatabaseAndState:
    """`field` (the field `name` of `app_label.model_name` with `db_index=False`) replaces the same field with
    Django's automatic index, and `index` (a plain `models.Index` on that field, or None: no index)
    takes the automatic one's place.

    Not a plain AlterField + AddIndex: on a foreign key AlterField drops and re-adds (re-validates)
    the FK constraint, rebuilds the kept btree under its new name, and drops EVERY single-column
    index of the column that is not a Meta index, unique partial ones included (it took
    capture_one_per_attempt with it). Here the database side drops only the two indexes Django
    made for the field, by their names, and renames the plain one to `index.name` (PostgreSQL;
    SQLite builds it: it has no ALTER INDEX ... RENAME)."""
    from django.db.migrations.operations import AddIndex, AlterField

    state_operations = [AlterField(model_name=model_name, name=name, field=field)]
    if index is not None:
        state_operations.append(AddIndex(model_name=model_name, index=index))

    def _names(apps, schema_editor):
        model = apps.get_model(app_label, model_name)
        column = model._meta.get_field(name).column
        table = model._meta.db_table
        auto = schema_editor._create_index_name(table, [column])
        return model, table, auto, schema_editor._create_index_name(table, [column], suffix="_like")

    def forward(apps, schema_editor):
        model, table, auto, like = _names(apps, schema_editor)
        qn = schema_editor.quote_name
        schema_editor.execute(f"DROP INDEX IF EXISTS {qn(like)}", params=None)
        with schema_editor.connection.cursor() as cursor:
            present = auto in schema_editor.connection.introspection.get_constraints(cursor, table)
        if index is not None and present and schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER INDEX {qn(auto)} RENAME TO {qn(index.name)}", params=None)
            return
        schema_editor.execute(f"DROP INDEX IF EXISTS {qn(auto)}", params=None)
        if index is not None:
            schema_editor.add_index(model, index)

    def backward(apps, schema_editor):
        model, table, auto, like = _names(apps, schema_editor)
        field = model._meta.get_field(name)
        if index is not None:
            schema_editor.remove_index(model, index)
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(schema_editor._create_index_sql(
                model, fields=[field], suffix="_like", opclasses=["varchar_pattern_ops"]))

    return migrations.SeparateDatabaseAndState(
        state_operations=state_operations,
        database_operations=[migrations.RunPython(forward, backward, elidable=False)])
