"""Table aliases: ``P2 = Person.alias("p2")`` for self-joins and a model joined twice.

``P2.name`` is a column node of the alias (``"p2"."name"``) that compares and converts
values like ``Person.name``; ``query.join(P2, on=...)`` renders ``JOIN "Person" AS "p2"``.
"""

from __future__ import annotations

from typing import Any

from fluxon.database.expressions import Context, _Column, quote
from fluxon.errors import ConfigurationError

__all__ = ["ModelAlias", "AliasedColumn", "model_alias", "source_name", "source_sql", "source_model"]


class AliasedColumn(_Column):
    """A field seen through a table alias: renders ``"alias"."column"``."""

    __slots__ = ("source", "field")

    def __init__(self, source: "ModelAlias", field: Any) -> None:
        self.source, self.field = source, field

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def model(self) -> type:
        return self.field.model

    @property
    def python_value(self) -> Any:
        return self.field.python_value

    def _sql(self, ctx: Context) -> None:
        ctx.sql.append(quote(self.source._alias) + "." + quote(self.field.column))

    def _convert_value(self, value: Any) -> Any:
        return self.field._convert_value(value)

    def __repr__(self) -> str:
        return f"<AliasedColumn {self.source._alias}.{self.field.name}>"


class ModelAlias:
    """A model under another name in one query (``Model.alias("p2")``).

    Its public attributes are the model's columns, so its own start with ``_``.
    """

    def __init__(self, model: type, name: str) -> None:
        self._model, self._alias = model, name
        self._columns: dict[str, AliasedColumn] = {}

    def __getattr__(self, name: str) -> AliasedColumn:
        if name.startswith("_"):
            raise AttributeError(name)
        column = self._columns.get(name)
        if column is None:
            field = self._model._meta.by_name.get(name)
            if field is None:
                raise AttributeError(f"{self._model.__name__} (alias {self._alias!r}) has no "
                                     f"field {name!r}")
            column = self._columns[name] = AliasedColumn(self, field)
        return column

    def _column(self, field: Any) -> AliasedColumn:
        """This alias's column for a field of the model."""
        return getattr(self, field.name)

    def _fields(self) -> list[AliasedColumn]:
        return [self._column(f) for f in self._model._meta.fields]

    def __repr__(self) -> str:
        return f"<ModelAlias {self._model.__name__} AS {self._alias}>"


def model_alias(model: type, name: str) -> ModelAlias:
    """``Model.alias(name)``: names starting with ``_`` are kept for Fluxon's own aliases."""
    if not isinstance(name, str) or not name or name.startswith("_"):
        raise ConfigurationError(f"a table alias is a name not starting with '_', not {name!r}")
    return ModelAlias(model, name)


def source_model(source: Any) -> type:
    """The model behind a query source (a model class or an alias)."""
    return source._model if isinstance(source, ModelAlias) else source


def source_name(source: Any) -> str:
    """How columns of the source are qualified: the alias, or the table name."""
    return source._alias if isinstance(source, ModelAlias) else source._meta.table_name


def source_sql(source: Any) -> str:
    """The source in a FROM or JOIN clause."""
    if isinstance(source, ModelAlias):
        return f"{quote(source._model._meta.table_name)} AS {quote(source._alias)}"
    return quote(source._meta.table_name)
