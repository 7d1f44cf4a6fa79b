"""``SqliteDatabase`` and ``PostgresDatabase``: the seed's data-manipulation API.

    db = SqliteDatabase("app.sqlite3", models=[User, Course])   # or connect(url, models=...)
    user_id = db.User.insert({db.User.username: "ada", db.User.password: "pw"})
    db.update(User, {db.User.email: "a@example.com"}, db.where[db.User.username == "ada"])
    rows = db.User.Check(db.where[db.User.username == "ada"], fetch=1)
    db.User.Delete(User, db.where[db.User.id == user_id])

Lower-case and capitalised spellings are the same methods, on both databases. On
SQLite each thread (and each process) gets its own connection and writes outside
``db.atomic()`` run in their own ``BEGIN IMMEDIATE`` transaction; ``PostgresDatabase``
(in ``fluxon.database.pg_database``) borrows pooled connections instead.
"""

from __future__ import annotations

import functools
import itertools
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fluxon.database.backends.base import Backend
from fluxon.database.backends.sqlite import SQLITE
from fluxon.database.connection import Atomic, ConnectionManager, translate_error
from fluxon.database.ddl import schema_statements
from fluxon.database.expressions import Where, where
from fluxon.database.fields import PasswordField, python_key
from fluxon.database.models import Model, collect_models, model_by_name
from fluxon.database.query import (
    Select, check_count, delete_statement, insert_plan, rows_from_iterable, update_statement,
)
from fluxon.database.upsert import get_or_create, update_or_create, upsert
from fluxon.errors import ConfigurationError, ValidationError

__all__ = ["Database", "SqliteDatabase", "PostgresDatabase", "BoundModel", "where", "Where"]

_MAX_PLANS = 256  # compiled INSERTs kept per model


class Database:
    """What every database does with bound models; the subclasses add the connections.

    :class:`SqliteDatabase` and :class:`PostgresDatabase` share every method here; the
    differences between the two live in ``self.backend`` and in the few methods each one
    overrides (connections, transactions, running a statement).
    """

    where = where
    backend: Backend = SQLITE

    def __init__(self, models: Any = None) -> None:
        self.models: dict[str, type[Model]] = {}
        self._bound: dict[str, BoundModel] = {}
        if models is not None:
            self.bind(models)

    @property
    def display_name(self) -> str:
        """What logs, errors and ``repr`` show for this database (never a password)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_name!r} models={sorted(self.models)}>"

    # -- models --------------------------------------------------------------------------
    def bind(self, models: Any) -> list[type[Model]]:
        """Bind models (a module or an iterable) to this database; returns them."""
        found = collect_models(models)
        for model in found:
            model._meta.database = self
            self.models[model.__name__] = model
            self._bound.pop(model.__name__, None)   # a re-imported model replaces the old one
        return found

    def __getattr__(self, name: str) -> "BoundModel":
        if name.startswith("_"):
            raise AttributeError(name)
        bound = self._bound.get(name)
        if bound is not None:
            return bound
        model = self.models.get(name) or model_by_name(name)
        if model is None or model._meta.abstract:
            raise AttributeError(f"{type(self).__name__} has no attribute or model {name!r}")
        if model._meta.database is None:
            model._meta.database = self
        bound = self._bound[name] = BoundModel(self, model)
        return bound

    def create_tables(self, models: Any = None) -> None:
        """Create missing tables and indexes for ``models`` (default: the bound ones)."""
        statements = schema_statements(models if models is not None else list(self.models.values()),
                                       if_not_exists=True, backend=self.backend)
        with self.atomic():
            for statement in statements:
                self._write(statement, ())

    # -- what each backend's database provides --------------------------------------------
    def atomic(self) -> Any:
        """``with db.atomic():`` one transaction; nested blocks are savepoints."""
        raise NotImplementedError

    def in_transaction(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Give back this thread's connection."""

    def close_all(self) -> None:
        """Close every connection (at shutdown)."""

    def _read(self, sql: str, params: Any) -> list:
        raise NotImplementedError

    def _write(self, sql: str, params: Any) -> Any:
        """Run one writing statement; the result has ``rowcount`` and ``fetchall()``."""
        raise NotImplementedError

    def stream(self, sql: str, params: Iterable[Any] = (), *, batch_size: int = 2000) -> Iterator[tuple]:
        """Rows of a SELECT, fetched ``batch_size`` at a time (``Select.iterator`` uses it)."""
        raise NotImplementedError

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list:
        """Run programmer-written SQL with bound parameters; returns the fetched rows."""
        head = sql.lstrip()[:10].upper()
        if head.startswith(("SELECT", "WITH", "PRAGMA", "EXPLAIN")):
            return self._read(sql, tuple(params))
        return self._write(sql, tuple(params)).fetchall()

    # -- writing -------------------------------------------------------------------------
    def insert(self, model: Any, data: Mapping[Any, Any] | None = None, **values: Any) -> Any:
        """Insert one row (keys: fields or field names); returns its primary key.

        Keyword arguments are fields too (merged with ``data``): one that is not a field of
        the model raises ValidationError rather than being dropped.
        """
        return self._insert(_model_of(model), _merged(data, values))

    def _insert(self, model: type[Model], data: Mapping[Any, Any]) -> Any:
        plan, params = self._insert_params(model, data)
        pk_position = plan[4]
        if pk_position is None:
            return self._insert_returning_key(plan[0], params, model._meta.pk)
        self._write(plan[0], params)
        return python_key(model._meta.pk, params[pk_position])

    def _insert_params(self, model: type[Model], data: Mapping[Any, Any]) -> tuple[tuple, list]:
        """The compiled INSERT for the keys of ``data`` (cached per model) and its parameters."""
        plan = self._insert_plan(model, data)
        return plan, _row_params(plan, data)

    def _insert_plan(self, model: type[Model], data: Mapping[Any, Any]) -> tuple:
        meta = model._meta
        if type(data) is not dict and not isinstance(data, Mapping):
            raise ValidationError(f"{model.__name__}.insert takes a dict of field values, "
                                  f"not {type(data).__name__}")
        try:
            keys = tuple(data)
            plan = meta.insert_plans.get(keys)
        except TypeError:
            raise ValidationError(f"{model.__name__}.insert takes a dict of field values, "
                                  f"not {type(data).__name__}") from None
        if plan is None:
            plan = insert_plan(meta, keys)
            if len(meta.insert_plans) >= _MAX_PLANS:  # key orders chosen by clients: stay bounded
                meta.insert_plans.clear()
            meta.insert_plans[keys] = plan
        return plan

    def _insert_returning_key(self, sql: str, params: list, pk: Any) -> Any:
        raise NotImplementedError

    def insert_many(self, model: Any, rows: Iterable[Mapping[Any, Any]], *,
                    returning: bool = False) -> Any:
        """Insert many rows in one transaction; returns how many, or with ``returning`` the
        list of their primary keys (in order). Runs of rows with the same keys go to the
        driver as one batch (``executemany``)."""
        model = _model_of(model)
        rows = rows_from_iterable(rows)
        with self.atomic():
            if returning:
                return [self._insert(model, row) for row in rows]
            for _, same_keys in itertools.groupby(rows, key=tuple):
                group = list(same_keys)
                plan = self._insert_plan(model, group[0])
                self._write_many(plan[0], map(functools.partial(_row_params, plan), group))
        return len(rows)

    def _write_many(self, sql: str, batch: Iterable[list]) -> None:
        """Run one statement for each parameter list (inside a transaction)."""
        for params in batch:
            self._write(sql, params)

    def upsert(self, model: Any, data: Mapping[Any, Any], *, conflict: Iterable[Any],
               update: Iterable[Any] | None = None) -> Any:
        """Insert ``data`` or update the row it conflicts with; see ``fluxon.database.upsert``."""
        return upsert(self, _model_of(model), data, conflict, update)

    def get_or_create(self, model: Any, defaults: Mapping[str, Any] | None = None,
                      **lookup: Any) -> tuple[Any, bool]:
        """``(row, created)``: the row matching ``lookup``, or a new one (one transaction)."""
        return get_or_create(self, _model_of(model), defaults, lookup)

    def update_or_create(self, model: Any, defaults: Mapping[str, Any] | None = None,
                         **lookup: Any) -> tuple[Any, bool]:
        """``(row, created)``: the row matching ``lookup`` updated with ``defaults``, or a new one."""
        return update_or_create(self, _model_of(model), defaults, lookup)

    bulk_insert = insert_many

    def update(self, model: Any, data: Mapping[Any, Any], where: Any = None, *,
               all: bool = False) -> int:  # noqa: A002 - the seed's keyword
        """Update the rows matching ``where``; returns how many. No where needs ``all=True``."""
        sql, params = update_statement(_model_of(model), data, where, all)
        return self._write(sql, params).rowcount

    def delete(self, *args: Any, all: bool = False) -> int:  # noqa: A002
        """``delete(Model, where)``; returns how many rows went. No where needs ``all=True``."""
        if not args:
            raise ConfigurationError("delete() needs the model: db.delete(User, db.where[...])")
        model = _model_of(args[0])
        sql, params = delete_statement(model, _single_where(args[1:]), all)
        return self._write(sql, params).rowcount

    def _save(self, obj: Model) -> Any:
        model = type(obj)
        meta = model._meta
        state = obj.__dict__
        for field in meta.fields:
            if field.auto_now:
                state[field.name] = field.get_default()
            elif isinstance(field, PasswordField) and state.get(field.name) is not None:
                state[field.name] = field.db_value(state[field.name])  # keep the hash, not the text
        pk_name = meta.pk.name
        data = {f.name: state[f.name] for f in meta.fields if f.name in state}
        pk = data.get(pk_name)
        if pk is None:
            data.pop(pk_name, None)
            state[pk_name] = self.insert(model, data)
            return state[pk_name]
        with self.atomic():
            changed = self.update(model, {k: v for k, v in data.items() if k != pk_name},
                                  meta.pk == pk) if len(data) > 1 else 0
            if not changed and not self.exists(model, meta.pk == pk):
                self.insert(model, data)
        return pk

    # -- reading -------------------------------------------------------------------------
    def select(self, model: Any, *columns: Any) -> Select:
        """A chainable query on ``model`` (all columns, or the chosen fields)."""
        return Select(self, _model_of(model), columns)

    def check(self, model: Any, where: Any = None, fetch: int | None = None, *,
              order_by: Any = None, offset: int | None = None, columns: Iterable[Any] = (),
              as_dict: bool = False) -> list:
        """Rows matching ``where`` as a list: all of them, or at most ``fetch``."""
        query = Select(self, _model_of(model), tuple(columns))
        if where is not None:
            query = query.where(where)
        if order_by is not None:
            query = query.order_by(*(order_by if isinstance(order_by, (list, tuple)) else [order_by]))
        if fetch is not None:
            query = query.limit(check_count(fetch, "fetch"))
        if offset is not None:
            query = query.offset(offset)
        return query.dicts(as_dict).all()

    def get(self, model: Any, where: Any = None, **equal: Any) -> Any:
        """Exactly one row, else DoesNotExist or MultipleObjectsReturned."""
        query = Select(self, _model_of(model))
        return query.where(*(() if where is None else (where,)), **equal).get()

    def count(self, model: Any, where: Any = None) -> int:
        query = Select(self, _model_of(model))
        return (query.where(where) if where is not None else query).count()

    def exists(self, model: Any, where: Any = None) -> bool:
        query = Select(self, _model_of(model))
        return bool((query.where(where) if where is not None else query).exists())



class SqliteDatabase(Database):
    """One SQLite database file; binds models so ``User.insert(...)`` works in views.

    ``path``: the database file (``":memory:"`` gives each thread its own empty database).
    ``models``: a module or iterable of models to bind (their class-level methods then
    run here). ``timeout_s``: how long a writer waits for the write lock.
    """

    def __init__(self, path: str | os.PathLike, models: Any = None, *, timeout_s: float = 30.0,
                 synchronous: str = "NORMAL") -> None:
        self.path = os.fspath(path)
        self._connections = ConnectionManager(self.path, timeout_s=timeout_s, synchronous=synchronous)
        super().__init__(models)

    @property
    def display_name(self) -> str:
        return self.path

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened with WAL, foreign keys and a busy timeout)."""
        return self._connections.get()

    def close(self) -> None:
        """Close this thread's connection."""
        self._connections.close()

    def close_all(self) -> None:
        """Close every thread's connection (at shutdown)."""
        self._connections.close_all()

    def atomic(self) -> Atomic:
        """``with db.atomic():`` one transaction (BEGIN IMMEDIATE); nested blocks are savepoints."""
        return Atomic(self._connections)

    def in_transaction(self) -> bool:
        return self._connections.get().in_transaction

    def _read(self, sql: str, params: Any) -> list:
        conn = self._connections.get()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc, conn=conn, sql=sql, params=params) from exc

    def stream(self, sql: str, params: Iterable[Any] = (), *, batch_size: int = 2000) -> Iterator[tuple]:
        """Rows of a SELECT from an open cursor, fetched ``batch_size`` at a time."""
        try:
            cursor = self._connections.get().execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        try:
            while True:
                try:
                    chunk = cursor.fetchmany(batch_size)
                except sqlite3.Error as exc:
                    raise translate_error(exc) from exc
                if not chunk:
                    return
                yield from chunk
        finally:
            cursor.close()

    def _write(self, sql: str, params: Any) -> Any:
        conn = self._connections.get()
        try:
            if conn.in_transaction:
                cursor = conn.execute(sql, params)
                return cursor if cursor.description is None else _Fetched(cursor)
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute(sql, params)
                if cursor.description is not None:
                    cursor = _Fetched(cursor)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return cursor
        except sqlite3.Error as exc:
            raise translate_error(exc, conn=conn, sql=sql, params=params) from exc

    def _insert_returning_key(self, sql: str, params: list, pk: Any) -> Any:
        return self._write(sql, params).lastrowid

    def _write_many(self, sql: str, batch: Iterable[list]) -> None:
        conn = self._connections.get()
        try:
            conn.executemany(sql, batch)
        except sqlite3.Error as exc:
            raise translate_error(exc, conn=conn, sql=sql) from exc


class _Fetched:
    """A writing statement's result with its rows already read (``INSERT ... RETURNING``).

    SQLite cannot COMMIT while a statement still has rows to give, so they are read first.
    """

    __slots__ = ("rows", "rowcount", "lastrowid")

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.rows = cursor.fetchall()
        self.rowcount, self.lastrowid = cursor.rowcount, cursor.lastrowid

    def fetchall(self) -> list:
        return self.rows



def _row_params(plan: tuple, data: Mapping[Any, Any]) -> list:
    """A row's INSERT parameters: its values converted, then the fields' defaults."""
    params = [convert(value) for convert, value in zip(plan[1], data.values())]
    if plan[2]:
        params += [make() for make in plan[2]]
    if plan[3]:
        params += plan[3]
    return params


def _merged(data: Mapping[Any, Any] | None, values: dict[str, Any]) -> Mapping[Any, Any]:
    """``insert(data, **values)``: both are fields of the row (never silently dropped)."""
    if data is None:
        return values
    if not values:
        return data
    if not isinstance(data, Mapping):
        raise ValidationError(f"insert takes a dict of field values, not {type(data).__name__}")
    return {**data, **values}


def _model_of(model: Any) -> type[Model]:
    if isinstance(model, BoundModel):
        return model.model
    if isinstance(model, type) and issubclass(model, Model) and not model._meta.abstract:
        return model
    raise ConfigurationError(f"expected a model class, not {model!r}")


def _single_where(args: tuple) -> Any:
    if len(args) > 1:
        raise ConfigurationError("delete takes one where clause (combine conditions with & or |)")
    return args[0] if args else None


class BoundModel:
    """``db.User``: the model's fields and class attributes, with methods running on ``db``."""

    __slots__ = ("db", "model")

    def __init__(self, db: Database, model: type[Model]) -> None:
        self.db = db
        self.model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __call__(self, **values: Any) -> Model:
        return self.model(**values)

    def __repr__(self) -> str:
        return f"<BoundModel {self.model.__name__} on {self.db.display_name!r}>"

    def insert(self, data: Mapping[Any, Any] | None = None, **values: Any) -> Any:
        return self.db._insert(self.model, _merged(data, values))

    def insert_many(self, rows: Iterable[Mapping[Any, Any]], *, returning: bool = False) -> Any:
        return self.db.insert_many(self.model, rows, returning=returning)

    def upsert(self, data: Mapping[Any, Any], *, conflict: Iterable[Any],
               update: Iterable[Any] | None = None) -> Any:
        return self.db.upsert(self.model, data, conflict=conflict, update=update)

    def get_or_create(self, defaults: Mapping[str, Any] | None = None, **lookup: Any) -> tuple[Any, bool]:
        return self.db.get_or_create(self.model, defaults, **lookup)

    def update_or_create(self, defaults: Mapping[str, Any] | None = None, **lookup: Any) -> tuple[Any, bool]:
        return self.db.update_or_create(self.model, defaults, **lookup)

    def update(self, data: Mapping[Any, Any], where: Any = None, *, all: bool = False) -> int:  # noqa: A002
        return self.db.update(self.model, data, where, all=all)

    def delete(self, *args: Any, all: bool = False) -> int:  # noqa: A002
        """``db.User.delete(where)``; the seed's ``db.User.Delete(User, where)`` also works."""
        if args and (args[0] is self or args[0] is self.model):
            args = args[1:]
        elif args and not isinstance(args[0], (Where, type(None))) and _is_model(args[0]):
            raise ConfigurationError(f"db.{self.model.__name__}.delete was given another model")
        return self.db.delete(self.model, *args, all=all)

    def check(self, where: Any = None, fetch: int | None = None, **options: Any) -> list:
        return self.db.check(self.model, where, fetch, **options)

    def select(self, *columns: Any) -> Select:
        return self.db.select(self.model, *columns)

    def get(self, where: Any = None, **equal: Any) -> Any:
        return self.db.get(self.model, where, **equal)

    def count(self, where: Any = None) -> int:
        return self.db.count(self.model, where)

    def exists(self, where: Any = None) -> bool:
        return self.db.exists(self.model, where)

    def create(self, **values: Any) -> Model:
        obj = self.model(**values)
        self.db._save(obj)
        return obj


def _is_model(obj: Any) -> bool:
    return isinstance(obj, BoundModel) or (isinstance(obj, type) and issubclass(obj, Model))


_SEED_SPELLINGS = {"Insert": "insert", "InsertMany": "insert_many", "BulkInsert": "insert_many",
                   "bulk_insert": "insert_many", "Update": "update", "Delete": "delete",
                   "Check": "check", "Select": "select", "Get": "get", "Count": "count",
                   "Exists": "exists", "Create": "create"}


def _add_seed_spellings(cls: type) -> None:
    """The seed's capitalised spellings (``db.User.Check``) as the very same methods."""
    for alias, name in _SEED_SPELLINGS.items():
        if name in cls.__dict__ and alias not in cls.__dict__:
            setattr(cls, alias, cls.__dict__[name])


_add_seed_spellings(Database)
_add_seed_spellings(BoundModel)

from fluxon.database.pg_database import PostgresDatabase  # noqa: E402 - it subclasses Database
