"""The lines' row key and object id compare byte by byte (PostgreSQL: COLLATE "C").

Both are ASCII identifiers, only ever compared for equality (and sorted nowhere a person reads
them), so the C collation changes no result: the same keys are equal, and the C.UTF-8 order of
ASCII is the byte order. What it changes is the cost of building their indexes in a large import:
under the database's C.UTF-8 collation PostgreSQL 15 compares text through strcoll() and without
abbreviated keys; under "C" by memcmp() with them (a million row keys: ~2x faster to index; see
docs/decisions/reconciliation-import-speed.md, "Session 5"). A comparison with another table's id
(default collation) takes the column's "C" (an implicit collation beats the default one).

SQLite keeps its own (binary) comparison: nothing to do there. The model does not name the
collation (SQLite has no "C"): the migration state is unchanged.
"""

from django.db import migrations

COLUMNS = (("row_key", "varchar(200)"), ("object_id", "varchar(40)"))


def _collate(collation: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for column, kind in COLUMNS:
            schema_editor.execute(
                f'ALTER TABLE reconciliation_statementline ALTER COLUMN {column} TYPE {kind} COLLATE "{collation}"'
            )

    return run


bytewise, by_locale = _collate("C"), _collate("default")


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0005_line_key_once")]

    operations = [migrations.RunPython(bytewise, by_locale)]
