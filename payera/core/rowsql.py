"""Precompiled INSERT and UPDATE statements for rows written on every payment.

Django builds and compiles an InsertQuery or UpdateQuery for every `save()` and `bulk_create()`,
and on PostgreSQL its bulk insert sends every column as an array (`UNNEST`), which psycopg
escapes element by element in Python. Here a model's statements are built once from its
metadata — identifiers quoted by the connection, every value a parameter — and reused:
- `row_statements(model, using)`: the INSERT of one row and the UPDATE of a set of columns
  (`payments.rowsql.PrecompiledSaveMixin` runs them inside `save()`); on PostgreSQL a commit stamp
  (`payera.core.horizon.CommitStampField`) is the INSERT's own expression, returned (RETURNING);
- `rows_insert(objs)`: `bulk_create(objs)` as one `INSERT … VALUES (…), (…) [RETURNING id]`, for
  the batches a recording transaction writes (its PaymentEvents, outbox events, audit entries).
- `new_row(model, **values)`: `model(**values)` for such rows, without `Model.__init__`'s generic
  keyword handling;
- `precompiled_select(model, build, *values)`: a queryset's SELECT (Django's own statement) compiled
  once and run with new values, the instances built as Django builds them — no caching of rows.
Values go through each field's `pre_save` and `get_db_prep_save`, as Django's own compilers do
(`db_prep_save`: for plain text, integer, boolean, datetime and key fields, the common values
straight to where that chain ends).
"""

from __future__ import annotations

import functools

from django.db import connections, router, transaction
from django.db.models import DEFERRED, NOT_PROVIDED, Field
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from payera.core.horizon import STAMP_AFTER_XID_PG


@functools.cache
def _text_field_classes() -> frozenset:
    from django.db import models
    from django_fsm import FSMField

    # these classes' get_db_prep_save returns a str or None unchanged (CharField.to_python); a
    # subclass (e.g. an encrypting field) may not: exact classes only
    return frozenset({models.CharField, models.TextField, models.SlugField, models.EmailField, models.URLField,
                      FSMField})


@functools.cache
def _integer_field_classes() -> frozenset:
    from django.db import models

    # get_prep_value is int(value) (an int unchanged), get_db_prep_value the backend's
    # adapt_integerfield_value of it (psycopg 3: its Int2/Int4/Int8 wrapper); exact classes only
    return frozenset({models.IntegerField, models.BigIntegerField, models.SmallIntegerField,
                      models.PositiveIntegerField, models.PositiveBigIntegerField, models.PositiveSmallIntegerField})


def db_prep_save(field):
    """`field.get_db_prep_save`, or for the plain field classes a payment writes a function that
    skips Django's chain of get_db_prep_save → get_db_prep_value → get_prep_value → to_python for
    the values it hands back unchanged, and ends where that chain ends:
    - a text field: a str (a TextChoices member too) or None as it is;
    - an integer field: None as it is, an int (not a bool) to the backend's `adapt_integerfield_value`;
    - a boolean field: a bool or None as it is;
    - a datetime field: None as it is, an aware datetime to the backend's `adapt_datetimefield_value` (a naive
      one, which Django warns about and makes aware, goes through Django's chain);
    - a foreign key or one-to-one: a non-empty str or an int to its target field's function;
    anything else to Django's."""
    import datetime as dt

    from django.db import models

    slow = field.get_db_prep_save
    kind = type(field)
    if kind in _text_field_classes():
        def prep(value, connection):
            if value is None or isinstance(value, str):  # CharField.to_python: a str (or TextChoices) as it is
                return value
            return slow(value, connection)
    elif kind in _integer_field_classes():
        internal = field.get_internal_type()

        def prep(value, connection):
            if value is None:
                return None
            if type(value) is int:
                return connection.ops.adapt_integerfield_value(value, internal)
            return slow(value, connection)
    elif kind is models.BooleanField:
        def prep(value, connection):
            if value is None or type(value) is bool:
                return value
            return slow(value, connection)
    elif kind is models.DateTimeField:
        def prep(value, connection):
            if value is None:
                return None
            if type(value) is dt.datetime and value.tzinfo is not None:
                return connection.ops.adapt_datetimefield_value(value)
            return slow(value, connection)
    elif kind in (models.ForeignKey, models.OneToOneField):
        target = db_prep_save(field.target_field)
        if target == field.target_field.get_db_prep_save:
            return slow

        def prep(value, connection):
            if value is None:
                return None
            if (type(value) is str and value) or type(value) is int:
                return target(value, connection)
            return slow(value, connection)
    else:
        return slow
    return prep


_PLAIN_TYPES = frozenset({str, int, bool, float, bytes, dict, list, type(None)})


def any_expression(values) -> bool:
    """Whether a value is a query expression (`hasattr(value, "resolve_expression")`, Django's own
    test), asked only of values that are not of a plain type."""
    plain = _PLAIN_TYPES
    for v in values:
        if type(v) not in plain and hasattr(v, "resolve_expression"):
            return True
    return False


def kept_cursor(connection):
    """`connection.cursor()` for the precompiled statements, without a new database cursor each
    time: one psycopg cursor per database connection is kept and reused (creating one copies the
    connection's adapters and wraps it: ~18 times per payment). What Django's `cursor()` does
    around it is kept — the health check, the connection opened if needed, the thread check, and
    the same wrapper (`CursorDebugWrapper` when queries are logged, so `assertNumQueries` and the
    query log see every statement; execute wrappers run). Not closed after use (its last result
    stays until its next statement); a new one after a reconnect or a change of the connection's
    time zone. Use without `with` (which would close it)."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    kept = getattr(connection, "_rowsql_cursor", None)
    timezone = connection.timezone
    if kept is None or kept[0] is not raw or kept[1] is not timezone or getattr(kept[2], "closed", False):
        with connection.wrap_database_errors:
            kept = connection._rowsql_cursor = (raw, timezone, connection.create_cursor())
    return connection._prepare_cursor(kept[2])


class RowStatements:
    """One model's statements on one connection, built on first use."""

    def __init__(self, model, connection) -> None:
        meta = model._meta
        self._qn = qn = connection.ops.quote_name
        self.model = model
        self.fields = list(meta.concrete_fields)
        self.pk = meta.pk
        self.by_attname = {f.attname: f for f in self.fields}
        self.attnames = tuple(self.by_attname)
        self.prep = {f.attname: db_prep_save(f) for f in self.fields}  # attname -> get_db_prep_save
        self.table = qn(meta.db_table)
        # a commit stamp (payera.core.horizon.CommitStampField) is the INSERT's own expression on
        # PostgreSQL, read back with RETURNING: not a parameter (SQLite: a value, as any other)
        self.stamped = tuple(f for f in self.fields if getattr(f, "commit_stamp", False)
                             and connection.vendor == "postgresql")
        self.insert_fields = [f for f in self.fields if f not in self.stamped]
        self.insert = self._insert_sql(self.fields, 1, "", self.stamped)
        if self.stamped:
            self.insert += " RETURNING " + ", ".join(qn(f.column) for f in self.stamped)
        self.exists = f"SELECT 1 FROM {self.table} WHERE {qn(self.pk.column)} = %s"  # noqa: S608
        self._updates: dict[tuple, str] = {}
        self._inserts: dict[tuple[int, bool], str] = {}

    def _insert_sql(self, fields, rows: int, returning: str, stamped: tuple = ()) -> str:
        qn = self._qn
        one = "(" + ", ".join(STAMP_AFTER_XID_PG if f in stamped else "%s" for f in fields) + ")"
        columns = ", ".join(qn(f.column) for f in fields)
        values = ", ".join([one] * rows)
        # identifiers from the model's metadata; every value is a parameter
        return f"INSERT INTO {self.table} ({columns}) VALUES {values}{returning}"  # noqa: S608

    def update(self, attnames: tuple[str, ...], where: tuple[str, ...]) -> str:
        """`UPDATE … SET <attnames> WHERE <where>` (each one `= %s`)."""
        sql = self._updates.get((attnames, where))
        if sql is None:
            qn = self._qn
            sets = ", ".join(qn(self.by_attname[a].column) + " = %s" for a in attnames)
            cond = " AND ".join(qn(self.by_attname[a].column) + " = %s" for a in where)
            sql = self._updates[(attnames, where)] = f"UPDATE {self.table} SET {sets} WHERE {cond}"  # noqa: S608
        return sql

    def insert_many(self, rows: int) -> tuple[str, list]:
        """The INSERT of `rows` rows, and its fields: a primary key the database generates is left
        out and returned."""
        returning = bool(self.pk.db_returning)
        fields = [f for f in self.fields if not (returning and f.primary_key)]
        sql = self._inserts.get((rows, returning))
        if sql is None:
            sql = self._inserts[(rows, returning)] = self._insert_sql(
                fields, rows, f" RETURNING {self._qn(self.pk.column)}" if returning else "")
        return sql, fields


_statements: dict[tuple[str, type], RowStatements] = {}


def row_statements(model, using: str) -> RowStatements:
    key = (using, model)
    found = _statements.get(key)
    if found is None:
        found = _statements[key] = RowStatements(model, connections[using])
    return found


def rows_insert(objs: list) -> list:
    """`type(objs[0]).objects.bulk_create(objs)` in one precompiled statement: the same rows, the
    generated primary keys set on the objects, no signals (as bulk_create). Objects of one model;
    a generated key must not be set yet (else Django's bulk_create does it)."""
    if not objs:
        return objs
    model = type(objs[0])
    stmts = row_statements(model, router.db_for_write(model))
    if model._meta.parents or any(type(o) is not model for o in objs) or (
            stmts.pk.db_returning and any(o.pk is not None for o in objs)):
        return model.objects.bulk_create(objs)
    using = router.db_for_write(model)
    connection = connections[using]
    sql, fields = stmts.insert_many(len(objs))
    params = []
    for obj in objs:
        if obj.pk is None and not stmts.pk.db_returning:
            obj.pk = stmts.pk.get_pk_value_on_save(obj)
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
        values = [f.pre_save(obj, True) for f in fields]
        if any_expression(values):
            return model.objects.bulk_create(objs)
        prep = stmts.prep
        params.extend(prep[f.attname](v, connection) for f, v in zip(fields, values, strict=True))
    with transaction.mark_for_rollback_on_error(using):
        cursor = kept_cursor(connection)
        cursor.execute(sql, params)
        if stmts.pk.db_returning:
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using
    return objs


@functools.cache
def _row_shape(model) -> tuple | None:
    """Per model, what `new_row` needs: the keywords it takes (each field's name and attname),
    the relations' (name, attname) pairs, and (name, attname, default, is_relation) of each field
    Django's `Model.__init__` fills (`default` the field's own default function; a relation takes
    an instance under its name or an id under its attname); None for a model `new_row` leaves to
    Django (its own `__init__`, a field whose attribute is a data descriptor other than Django's
    plain ones)."""
    from django.db.models import Model
    from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
    from django.db.models.fields.reverse_related import ForeignObjectRel
    from django.db.models.query_utils import DeferredAttribute

    if model.__init__ is not Model.__init__ or model._meta.abstract:
        return None
    shape = []
    for field in model._meta.fields:
        if field.column is None or field.generated:
            continue
        descriptor = type(getattr(model, field.attname, None))
        if isinstance(field.remote_field, ForeignObjectRel):
            if descriptor is not ForeignKeyDeferredAttribute:
                return None
            shape.append((field.name, field.attname, field.get_default, True))
        else:
            if descriptor is not DeferredAttribute or type(field).get_default is not Field.get_default:
                return None
            # Field.get_default() is `self._get_default()`: the function it returns, called per row
            shape.append((field.name, field.attname, field._get_default, False))
    keywords = frozenset(k for name, attname, _, _ in shape for k in (name, attname))
    relations = tuple((name, attname) for name, attname, _, is_relation in shape if is_relation)
    return keywords, relations, tuple(shape)


def new_row(model, /, **values):
    """`model(**values)` for a row built only to be inserted (PaymentEvents, outbox events, audit
    entries): the same instance — every field's value or default (called per row), a related
    instance set through its descriptor (type and router checks, cache), `pre_init` and
    `post_init` sent — without `Model.__init__`'s generic keyword handling. Anything unusual is
    Django's own constructor: a model with its own `__init__` or unusual field descriptors, a
    keyword that is not a field's name or attname (a property, a typo: Django sets or refuses it)."""
    found = _row_shape(model)
    if found is None:
        return model(**values)
    keywords, relations, shape = found
    if not keywords.issuperset(values) or any(name in values and attname in values for name, attname in relations):
        return model(**values)  # a property, a virtual field, a typo, a relation given twice: Django's way
    pre_init.send(sender=model, args=(), kwargs=values)
    obj = model.__new__(model)
    obj._state = ModelState()
    attrs = obj.__dict__
    for name, attname, default, is_relation in shape:
        if is_relation and name in values:
            related = values[name]
            if related is not DEFERRED:
                setattr(obj, name, related)  # the descriptor: type check, router, attname, cache
            continue
        value = values.get(attname, NOT_PROVIDED)
        if value is NOT_PROVIDED:
            value = default()
        if value is not DEFERRED:
            attrs[attname] = value  # a fresh instance: what Django's descriptors would store
    post_init.send(sender=model, instance=obj)
    return obj


class _Marker(str):
    """A parameter's place in a compiled template (a str, so lookups on text columns keep it as is)."""

    __slots__ = ()


class PrecompiledSelect:
    """A queryset's SELECT compiled once, run with new values: `qs.filter(...)` built and compiled
    by Django on every call otherwise. The statement is Django's own (the template queryset
    compiled with a marker in place of each value); the instances are built as Django's
    ModelIterable builds them (`from_db` after each column's converters, select_related objects
    through Django's RelatedPopulators). Only plain model querysets: no annotations, extra
    selects, known related objects or prefetches (refused when the template is compiled)."""

    def __init__(self, build, arity: int, using: str) -> None:
        from django.db.models.query import ModelIterable, get_related_populators

        markers = [_Marker(f"\x00rowsql-param-{i}\x00") for i in range(arity)]
        qs = build(*markers)
        if qs._iterable_class is not ModelIterable or qs._known_related_objects or qs._prefetch_related_lookups:
            raise ValueError("PrecompiledSelect takes a plain model queryset")
        compiler = qs.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        if compiler.annotation_col_map or compiler.has_extra_select:
            raise ValueError("PrecompiledSelect takes no annotations or extra selects")
        slots = []
        for value in params:
            if isinstance(value, _Marker):
                slots.append(markers.index(value))
            elif isinstance(value, str) and "\x00rowsql-param-" in value:  # transformed (e.g. LIKE)
                raise ValueError("a value of a PrecompiledSelect must reach the statement unchanged")
            else:
                slots.append((value,))
        if sorted(s for s in slots if isinstance(s, int)) != list(range(arity)):
            raise ValueError("every value of a PrecompiledSelect must appear once in its statement")
        self.sql, self.slots, self.using = sql, slots, using
        select, klass_info = compiler.select, compiler.klass_info
        self.model = klass_info["model"]
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        self.start, self.end = start, end
        self.init_list = [f[0].target.attname for f in select[start:end]]
        self.populators = get_related_populators(klass_info, select, using)
        self.converters = list(compiler.get_converters([s[0] for s in select[: compiler.col_count]]).items())

    def run(self, values) -> list:
        connection = connections[self.using]
        params = [values[s] if isinstance(s, int) else s[0] for s in self.slots]
        cursor = kept_cursor(connection)
        cursor.execute(self.sql, params)
        rows = cursor.fetchall()
        objs = []
        using, model, start, end, init_list = self.using, self.model, self.start, self.end, self.init_list
        for row in rows:
            if self.converters:
                row = list(row)
                for pos, (convs, expression) in self.converters:
                    value = row[pos]
                    for converter in convs:
                        value = converter(value, expression, connection)
                    row[pos] = value
            obj = model.from_db(using, init_list, row[start:end])
            for populator in self.populators:
                populator.populate(row, obj)
            objs.append(obj)
        return objs


_selects: dict[tuple, PrecompiledSelect] = {}


def precompiled_select(model, build, *values: str) -> list:
    """`list(build(*values))` — `build` returns a queryset of `model` — with the queryset compiled
    once per database. `build` must be a module-level function whose queryset's shape does not
    depend on the values, and each value (a str) must reach the statement as one parameter, e.g.
    `filter(column=value)`; a value of another type runs `build` through the ORM."""
    if any(type(v) is not str for v in values):  # None (IS NULL), numbers: not the template's shape
        return list(build(*values))
    using = router.db_for_read(model)
    key = (build, using)
    select = _selects.get(key)
    if select is None:
        select = _selects[key] = PrecompiledSelect(build, len(values), using)
    return select.run(values)
