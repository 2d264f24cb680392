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
    """``SELECT`` one row of ``model`` and a related row, by equality on fields.

    ``PreparedSelect(ApiToken, related="user", where=["digest"]).get(digest=d)``
    returns the token with its ``user`` loaded (as ``select_related``), or
    ``None``. The ``where`` fields must identify at most one row.
    """

    def __init__(self, model: type[Model], *, related: str, where: Sequence[str]):
        self.model, self.related, self.where = model, related, tuple(where)
        self._prepared: dict[tuple[str, str], tuple] = {}

    def _prepare(self, connection: BaseDatabaseWrapper) -> tuple:
        quote = connection.ops.quote_name
        link = self.model._meta.get_field(self.related)
        other = link.related_model
        columns, converters = [], []
        for model, alias in ((self.model, "a"), (other, "b")):
            for field in model._meta.concrete_fields:
                columns.append(f"{alias}.{quote(field.column)}")
                converters.append(_converters(connection, field, alias))
        where_fields = [self.model._meta.get_field(name) for name in self.where]
        conditions = " AND ".join(f"a.{quote(f.column)} = %s" for f in where_fields)
        sql = (
            f"SELECT {', '.join(columns)} FROM {quote(self.model._meta.db_table)} a "
            f"INNER JOIN {quote(other._meta.db_table)} b "
            f"ON b.{quote(link.target_field.column)} = a.{quote(link.column)} "
            f"WHERE {conditions}"
        )
        split = len(self.model._meta.concrete_fields)
        return sql, converters, where_fields, split, other

    def get(self, **values: Any) -> Model | None:
        """Return the row whose ``where`` fields equal ``values``, or ``None``."""
        connection = connections[router.db_for_read(self.model)]
        key = (connection.alias, connection.vendor)
        if (prepared := self._prepared.get(key)) is None:
            prepared = self._prepared[key] = self._prepare(connection)
        sql, converters, where_fields, split, other = prepared
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
        instance = self.model.from_db(connection.alias, None, converted[:split])
        related = other.from_db(connection.alias, None, converted[split:])
        setattr(instance, self.related, related)
        return instance


class PreparedUpdate:
    """``UPDATE`` rows of ``model``: set fields, where fields equal values
    (and ``where_null`` fields are ``NULL``); return how many rows changed.

    As ``QuerySet.update``, it sends no signals and sets no ``auto_now``.
    """

    def __init__(
        self,
        model: type[Model],
        *,
        fields: Sequence[str],
        where: Sequence[str],
        where_null: Sequence[str] = (),
    ) -> None:
        self.model = model
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
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
