"""Statements prepared once, for the few queries on the path of every request.

Building and compiling a query costs the ORM several times what running it
costs: for the API-token lookup on SQLite about 0.3 ms against 0.03 ms. The
queries that (almost) every request runs are therefore written once per
database from the models' metadata, and run with values prepared and
converted as the ORM does (``get_db_prep_save``/``get_db_prep_value`` going in,
the backend's and the fields' converters coming out), so the rows written and
the instances read are the ORM's own. Everything else uses the ORM.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model


def _converters(connection: BaseDatabaseWrapper, field: Field, alias: str) -> tuple:
    column = field.get_col(alias)
    return (
        connection.ops.get_db_converters(column) + column.get_db_converters(connection),
        column,
    )


class PreparedSelect:
    """``SELECT`` at most one row of ``model`` by equality on fields.

    ``where`` fields equal the values given to ``get``, ``where_null`` fields
    are ``NULL``; ``fields`` limits the columns read (as ``only()``; the
    primary key is always read). With ``related``, the row that foreign key
    points to is joined and set on the instance (as ``select_related``).
    ``PreparedSelect(ApiToken, related="user", where=["digest"]).get(digest=d)``
    returns the token with its user, or ``None``.
    """

    def __init__(
        self,
        model: type[Model],
        *,
        where: Sequence[str],
        where_null: Sequence[str] = (),
        fields: Sequence[str] | None = None,
        related: str | None = None,
    ) -> None:
        self.model, self.related = model, related
        self.where, self.where_null = tuple(where), tuple(where_null)
        self.fields = None if fields is None else tuple(fields)
        self._prepared: dict[tuple[str, str], tuple] = {}

    def _own_fields(self) -> list[Field]:
        meta = self.model._meta
        if self.fields is None:
            return list(meta.concrete_fields)
        wanted = {meta.get_field(name).attname for name in self.fields}
        wanted.add(meta.pk.attname)
        return [field for field in meta.concrete_fields if field.attname in wanted]

    def _prepare(self, connection: BaseDatabaseWrapper) -> tuple:
        quote = connection.ops.quote_name
        meta = self.model._meta
        own = self._own_fields()
        columns = [f"a.{quote(field.column)}" for field in own]
        converters = [_converters(connection, field, "a") for field in own]
        source = f"{quote(meta.db_table)} a"
        other = None
        if self.related is not None:
            link = meta.get_field(self.related)
            other = link.related_model
            for field in other._meta.concrete_fields:
                columns.append(f"b.{quote(field.column)}")
                converters.append(_converters(connection, field, "b"))
            source += (
                f" INNER JOIN {quote(other._meta.db_table)} b "
                f"ON b.{quote(link.target_field.column)} = a.{quote(link.column)}"
            )
        where_fields = [meta.get_field(name) for name in self.where]
        conditions = [f"a.{quote(field.column)} = %s" for field in where_fields]
        conditions += [
            f"a.{quote(meta.get_field(name).column)} IS NULL"
            for name in self.where_null
        ]
        sql = f"SELECT {', '.join(columns)} FROM {source} WHERE " + " AND ".join(
            conditions
        )
        names = [field.attname for field in own]
        return sql, converters, where_fields, names, other

    def _prepared_for(self, connection: BaseDatabaseWrapper) -> tuple:
        key = (connection.alias, connection.vendor)
        if (prepared := self._prepared.get(key)) is None:
            prepared = self._prepared[key] = self._prepare(connection)
        return prepared

    def get(self, **values: Any) -> Model | None:
        """Return the row whose ``where`` fields equal ``values``, or ``None``."""
        row = self.fetch(**values)
        return None if row is None else self.build(row)

    def fetch(self, **values: Any) -> tuple | None:
        """Return the row's converted values (immutable, cacheable), or ``None``."""
        connection = connections[router.db_for_read(self.model)]
        sql, converters, where_fields, _, _ = self._prepared_for(connection)
        params = [
            field.get_db_prep_value(values[field.name], connection, prepared=False)
            for field in where_fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        converted = []
        for value, (functions, column) in zip(row, converters, strict=True):
            for function in functions:
                value = function(value, column, connection)
            converted.append(value)
        return (connection.alias, tuple(converted))

    def build(self, row: tuple) -> Model:
        """Return new instances made from a ``fetch`` result."""
        alias, converted = row
        _, _, _, names, other = self._prepared_for(connections[alias])
        split = len(names)
        instance = self.model.from_db(alias, names, list(converted[:split]))
        if other is not None:
            related = other.from_db(alias, None, list(converted[split:]))
            setattr(instance, self.related, related)
        return instance


class PreparedUpdate:
    """``UPDATE`` rows of ``model``: set fields, where fields equal values
    (and ``where_null`` fields are ``NULL``); return how many rows changed.

    As ``QuerySet.update``, it sends no signals and sets no ``auto_now``.
    With ``durable=False``, on PostgreSQL and outside a transaction, the
    statement commits without waiting for its WAL record to reach the disk
    (``synchronous_commit`` off for that statement alone): a crash of the
    database server may lose the last such changes, never corrupt anything.
    Only for bookkeeping that is checked or rebuilt anyway (an upload's
    progress, index rows): waiting for the disk there cost every upload
    chunk a flush behind the chunks being written.
    """

    def __init__(
        self,
        model: type[Model],
        *,
        fields: Sequence[str],
        where: Sequence[str],
        where_null: Sequence[str] = (),
        durable: bool = True,
    ) -> None:
        self.model, self.durable = model, durable
        self.fields, self.where, self.where_null = (
            tuple(fields),
            tuple(where),
            tuple(where_null),
        )
        self._prepared: dict[tuple[str, str], tuple] = {}

    def _prepare(self, connection: BaseDatabaseWrapper) -> tuple:
        quote = connection.ops.quote_name
        meta = self.model._meta
        set_fields = [meta.get_field(name) for name in self.fields]
        where_fields = [meta.get_field(name) for name in self.where]
        conditions = [f"{quote(f.column)} = %s" for f in where_fields]
        conditions += [
            f"{quote(meta.get_field(name).column)} IS NULL" for name in self.where_null
        ]
        sql = (
            f"UPDATE {quote(meta.db_table)} SET "
            + ", ".join(f"{quote(f.column)} = %s" for f in set_fields)
            + " WHERE "
            + " AND ".join(conditions)
        )
        return sql, set_fields, where_fields

    def run(self, values: Mapping[str, Any], **where: Any) -> int:
        """Set ``values`` on the rows matching ``where``; return the row count."""
        connection = connections[router.db_for_write(self.model)]
        key = (connection.alias, connection.vendor)
        if (prepared := self._prepared.get(key)) is None:
            prepared = self._prepared[key] = self._prepare(connection)
        sql, set_fields, where_fields = prepared
        params = [f.get_db_prep_save(values[f.name], connection) for f in set_fields]
        params += [
            f.get_db_prep_value(where[f.name], connection, prepared=False)
            for f in where_fields
        ]
        lazy = (
            not self.durable
            and connection.vendor == "postgresql"
            and not connection.in_atomic_block
            # Two statements in one call need client-side binding (Django's).
            and connection.settings_dict["OPTIONS"].get("server_side_binding")
            is not True
        )
        with connection.cursor() as cursor:
            if lazy:  # one implicit transaction: the setting ends with it
                cursor.execute(_LAZY_COMMIT + sql, params)
                cursor.nextset()
            else:
                cursor.execute(sql, params)
            return cursor.rowcount


_LAZY_COMMIT = "SET LOCAL synchronous_commit TO OFF; "
