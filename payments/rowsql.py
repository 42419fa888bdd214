"""Precompiled SQL for the rows the payment path reads and writes on every payment: the payment
method, the payment, its attempts and its captures (`PrecompiledSaveMixin`), and the payment's
lock (`payment_select_for_update`). The statements are built once from the models' metadata
(payera.core.rowsql: identifiers quoted, every value a parameter) instead of Django building and
compiling an InsertQuery, UpdateQuery or select_related SELECT on every call.

`save()` keeps everything else Django's save does, in its order:
1. the related-field check (an unsaved related object is refused, a saved one's id copied);
2. `pre_save` (auditlog's update entry, diffed against the locked row: payera.audit.snapshot);
3. the fields' own `pre_save` (`auto_now`) and `get_db_prep_save`;
4. the statement, the transaction marked for rollback if it fails (as Django's save does);
   an UPDATE of a state machine matches the state the instance was read in (django-fsm's
   `ConcurrentTransitionMixin`): a row found in another state raises `ConcurrentTransition`, a row
   not found at all is inserted (or refused with `update_fields`), as Django does;
5. `post_save` (auditlog's create entry), then the FSM's new initial state.

A locked row whose remembered copy is still the row (`audit_changed_fields`: same transaction,
no other instance of the row locked or saved since) writes only the columns that changed; the
audit entry is the one a full save writes (its diff sees every field). Anything unusual —
positional arguments, `force_update`, another database, deferred fields, an expression as a
value — goes through Django's own save.
"""

from __future__ import annotations

from django.db import DatabaseError, connections, router, transaction
from django.db.models.signals import post_save, pre_save
from django.db.transaction import TransactionManagementError
from django_fsm import ConcurrentTransition, ConcurrentTransitionMixin, FSMFieldMixin

from payera.audit.snapshot import audit_changed_fields
from payera.core.rowsql import any_expression, kept_cursor, row_statements


def _state_fields(model) -> tuple:
    fields = model.__dict__.get("_rowsql_state_fields")  # this model's own, not a parent's
    if fields is None:
        fields = tuple(f for f in model._meta.concrete_fields if isinstance(f, FSMFieldMixin)) \
            if issubclass(model, ConcurrentTransitionMixin) else ()
        model._rowsql_state_fields = fields
    return fields


class PrecompiledSaveMixin:
    """`save()` through the model's precompiled statements (see the module)."""

    def save(self, *args, force_insert=False, force_update=False, using=None, update_fields=None):
        model = type(self)
        db = router.db_for_write(model, instance=self)
        if (args or force_update or (using is not None and using != db) or force_insert not in (False, True)
                or (update_fields is not None and (not update_fields or force_insert or self._state.adding))
                or self.pk is None or model._meta.proxy or self.get_deferred_fields()):
            return super().save(*args, force_insert=force_insert, force_update=force_update, using=using,
                                update_fields=update_fields)
        stmts = row_statements(model, db)
        values = self.__dict__
        if any_expression(map(values.get, stmts.attnames)):
            return super().save(force_insert=force_insert, using=using, update_fields=update_fields)
        if update_fields is not None:
            update_fields = frozenset(update_fields)
            try:
                named = [model._meta.get_field(name) for name in update_fields]
            except Exception:  # Django's save says which name is wrong
                return super().save(update_fields=update_fields, using=using)
            if any(not f.concrete or f.primary_key or f.many_to_many for f in named):
                return super().save(update_fields=update_fields, using=using)
            columns = tuple(f.attname for f in stmts.fields if f in named)
        self._prepare_related_fields_for_save(operation_name="save")
        insert = bool(force_insert) or self._state.adding
        if not insert and update_fields is None:
            # a locked row that is still this instance's: only what changed (payera.audit.snapshot)
            changed = audit_changed_fields(self)
            columns = tuple(changed) if changed else tuple(f.attname for f in stmts.fields if not f.primary_key)
        pre_save.send(sender=model, instance=self, raw=False, using=db, update_fields=update_fields)
        connection = connections[db]
        created = insert
        states = _state_fields(model)
        with transaction.mark_for_rollback_on_error(db):
            cursor = kept_cursor(connection)
            if not insert:
                prep, by_attname = stmts.prep, stmts.by_attname
                params = [prep[a](by_attname[a].pre_save(self, False), connection) for a in columns]
                params.append(prep[stmts.pk.attname](self.pk, connection))
                if states:  # django-fsm's guard: the row is still in the state the instance was read in
                    initial = self._ConcurrentTransitionMixin__initial_states
                    params.extend(prep[f.attname](initial[f.attname], connection) for f in states)
                cursor.execute(stmts.update(columns, (stmts.pk.attname, *(f.attname for f in states))), params)
                if cursor.rowcount == 0:
                    if states:
                        cursor.execute(stmts.exists, [self.pk])
                        if cursor.fetchone() is not None:
                            raise ConcurrentTransition(
                                "Cannot save object! The state has been changed since fetched from the database!")
                    if update_fields is not None:
                        raise DatabaseError("Save with update_fields did not affect any rows.")
                    created = True
            if created:
                prep = stmts.prep
                cursor.execute(stmts.insert, [prep[f.attname](f.pre_save(self, True), connection)
                                              for f in stmts.insert_fields])
                if stmts.stamped:  # the commit stamp its INSERT took (payera.core.horizon)
                    for f, value in zip(stmts.stamped, cursor.fetchone(), strict=True):
                        setattr(self, f.attname, value)
        self._state.db = db
        self._state.adding = False
        post_save.send(sender=model, instance=self, created=created, update_fields=update_fields, raw=False,
                       using=db)
        if states:
            self._update_initial_state()
        return None

    save.alters_data = True

    # django-fsm's ConcurrentTransitionMixin looks its state fields up by filtering every field of
    # the model with a lambda, on every instance built (`__init__`) and every save: the same tuple,
    # kept per model (`_state_fields`)
    @property
    def state_fields(self) -> tuple:
        return _state_fields(type(self))

    def _update_initial_state(self) -> None:
        self._ConcurrentTransitionMixin__initial_states = {f.attname: getattr(self, f.attname)
                                                            for f in _state_fields(type(self))}


class _LockSelect:
    """`Payment.objects.select_for_update(of=("self",)).select_related("merchant", "payment_method",
    "booking").get(<where>)` as one precompiled statement: the same SQL shape (payment, merchant,
    method and booking in one row; only the payment's row locked), the same instances (built with
    `from_db` and each field's database converters, related ones cached as select_related caches
    them: a missing method or booking is cached as None)."""

    def __init__(self, connection, where: str) -> None:
        from payments.models import Booking, Payment

        qn = connection.ops.quote_name
        payment = Payment._meta
        self.parts = []  # (model, cache setter on the payment or None, column count, converters)
        columns = []
        joins = []
        for field in [None, payment.get_field("merchant"), payment.get_field("payment_method"),
                      Booking._meta.get_field("payment")]:
            model = Payment if field is None else (field.related_model if field.model is Payment else field.model)
            table = qn(model._meta.db_table)
            fields = list(model._meta.concrete_fields)
            columns.extend(f"{table}.{qn(f.column)}" for f in fields)
            converters = []
            for i, f in enumerate(fields):
                col = f.get_col(model._meta.db_table)
                found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if found:
                    converters.append((i, col, found))
            if field is None:
                setter = None
            elif field.model is Payment:  # merchant, payment_method: forward keys
                kind = "INNER" if not field.null else "LEFT OUTER"
                joins.append(f"{kind} JOIN {table} ON ({qn(payment.db_table)}.{qn(field.column)} = "
                             f"{table}.{qn(field.target_field.column)})")
                setter = field.set_cached_value
            else:  # the booking: a reverse one-to-one
                joins.append(f"LEFT OUTER JOIN {table} ON ({qn(payment.db_table)}.{qn(payment.pk.column)} = "
                             f"{table}.{qn(field.column)})")
                setter = field.remote_field.set_cached_value
            self.parts.append((model, field, setter, [f.attname for f in fields], converters))
        table = qn(payment.db_table)
        # identifiers from the models' metadata; the id is a parameter
        # as Django's select_for_update: a backend without row locks (SQLite, whose writers take
        # the whole database: the embedded default) gets the plain SELECT
        lock = f" FOR UPDATE OF {table}" if connection.features.has_select_for_update_of else ""
        self.sql = f"SELECT {', '.join(columns)} FROM {table} {' '.join(joins)} WHERE {where}{lock}"  # noqa: S608

    def fetch(self, using: str, connection, param: str):
        from payments.models import Payment

        cursor = kept_cursor(connection)
        cursor.execute(self.sql, [param])
        row = cursor.fetchone()
        if row is None:
            raise Payment.DoesNotExist("Payment matching query does not exist.")
        start = 0
        payment = None
        for model, field, setter, attnames, converters in self.parts:
            values = list(row[start:start + len(attnames)])
            start += len(attnames)
            if values[0] is None and payment is not None:  # a LEFT JOIN that found nothing
                setter(payment, None)
                continue
            for i, col, found in converters:
                value = values[i]
                for convert in found:
                    value = convert(value, col, connection)
                values[i] = value
            obj = model.from_db(using, attnames, values)
            if payment is None:
                payment = obj
            else:
                setter(payment, obj)
                if field.model is not Payment:  # the booking knows its payment, as select_related sets it
                    field.set_cached_value(obj, payment)
        return payment


_locks: dict[tuple[str, str], _LockSelect] = {}


def payment_select_for_update(*, payment_id: str | None = None, attempt_id: str | None = None):
    """The payment (by its id, or by the id of one of its attempts) locked `FOR UPDATE`, with its
    merchant, payment method and booking loaded (not locked). Payment.DoesNotExist if none."""
    from payments.models import Payment, PaymentAttempt

    using = router.db_for_write(Payment)
    connection = connections[using]
    if connection.get_autocommit():
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    kind = "payment" if attempt_id is None else "attempt"
    select = _locks.get((using, kind))
    if select is None:
        qn = connection.ops.quote_name
        pk = f"{qn(Payment._meta.db_table)}.{qn(Payment._meta.pk.column)}"
        if kind == "payment":
            where = f"{pk} = %s"
        else:
            attempt = PaymentAttempt._meta
            column, table = qn(attempt.get_field("payment").column), qn(attempt.db_table)
            attempt_pk = qn(attempt.pk.column)
            where = f"{pk} = (SELECT U0.{column} FROM {table} U0 WHERE U0.{attempt_pk} = %s LIMIT 1)"  # noqa: S608
        select = _locks[(using, kind)] = _LockSelect(connection, where)
    return select.fetch(using, connection, payment_id if attempt_id is None else attempt_id)
