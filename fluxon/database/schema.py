"""Schema snapshots (``saveschema``) and data-preserving migrations between them (``updateschema N``).

A snapshot is a plain SQL file, ``<schema_dir>/schema_NNNNN.sql``, that ``sqlite3 db < file``
can run on an empty database::

    -- fluxon schema snapshot 00002
    -- created 2026-11-25T23:59:59Z
    -- sha256 6f1c...e2
    -- fluxon:rename-table "Pupil" from "Student"
    -- fluxon:rename-column "Teacher"."full_name" from "name"

    CREATE TABLE "Teacher" (...);

    CREATE INDEX "Course_teacher_id" ON "Course" ("teacher_id");

The header gives the number, the UTC time and the sha256 of the statements (the body: each
statement ending in ``;``, joined by a blank line). Rename hints come from the models
(``renamed_from=`` on a field, ``Meta.renamed_from`` on a model) and may also be added by hand:
they are not part of the hash, because they say how to get here, not what the schema is. Hints
from every snapshot in the folder are used in both directions, so moving back undoes a rename.

The database records the snapshot it is on in ``fluxon_schema_history`` (one row per migration:
number, hash, time, direction, backup file). The functions here return plain data (dicts and
lists) that the CLI prints and that the worker's ADMIN jobs send over the wire as JSON.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json as _json
import logging
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from fluxon.database.backends.pg_schema import pg_apply, pg_current_schema
from fluxon.database.backends.urls import is_postgres_url
from fluxon.database.ddl import schema_statements
from fluxon.database.diff import Operation, Renames, diff_schemas, plan_outcome
from fluxon.database.expressions import quote
from fluxon.database.introspect import HISTORY_TABLE, Schema, introspect, load_statements
from fluxon.database.migrate import execute_plan
from fluxon.database.utc import normalize_datetimes
from fluxon.database.models import collect_models
from fluxon.errors import ConfigurationError, FluxonError, SchemaError
from fluxon.private_files import ensure_private_file, prepare_private_database
from fluxon.routing import load_router

__all__ = [
    "Snapshot",
    "render_snapshot",
    "read_snapshot",
    "snapshot_path",
    "save_schema",
    "list_schemas",
    "plan_schema",
    "apply_schema",
    "current_schema",
    "save_router_schema",
    "list_router_schemas",
    "plan_router_schema",
    "apply_router_schema",
    "normalize_database_datetimes",
    "schema_cli",
]

log = logging.getLogger("fluxon.database.schema")

_FILE_RE = re.compile(r"^schema_(\d{5,})\.sql$")
_IDENT = r'"((?:[^"]|"")+)"'
_HEADER_RE = re.compile(r"^-- fluxon schema snapshot (\d+)$")
_CREATED_RE = re.compile(r"^-- created (\S+)$")
_SHA_RE = re.compile(r"^-- sha256 ([0-9a-f]{64})$")
_RENAME_TABLE_RE = re.compile(rf"^-- fluxon:rename-table {_IDENT} from {_IDENT}$")
_RENAME_COLUMN_RE = re.compile(rf"^-- fluxon:rename-column {_IDENT}\.{_IDENT} from {_IDENT}$")
_HISTORY_DDL = (f"CREATE TABLE IF NOT EXISTS {quote(HISTORY_TABLE)} ("
                '"id" INTEGER PRIMARY KEY, "snapshot" INTEGER NOT NULL, "sha256" TEXT NOT NULL, '
                '"applied_at" TEXT NOT NULL, "direction" TEXT NOT NULL, "operations" INTEGER NOT NULL, '
                '"backup" TEXT)')


# --------------------------------------------------------------------------- the snapshot file

@dataclass
class Snapshot:
    """One parsed snapshot file."""
    number: int
    created: str
    sha256: str
    statements: list[str]
    table_renames: list[tuple[str, str]] = field(default_factory=list)           # (new, old)
    column_renames: list[tuple[str, str, str]] = field(default_factory=list)     # (table, new, old)
    path: str | None = None

    def schema(self) -> Schema:
        """The schema the snapshot describes, read back from an in-memory database."""
        return load_statements(self.statements)[0]


def _unquote(text: str) -> str:
    return text.replace('""', '"')


def _body(statements: Sequence[str]) -> str:
    return "\n\n".join(s.strip().rstrip(";").rstrip() + ";" for s in statements) + "\n"


def _digest(statements: Sequence[str]) -> str:
    return hashlib.sha256(_body(statements).encode("utf-8")).hexdigest()


def render_snapshot(number: int, statements: Sequence[str], *, created: str | None = None,
                    table_renames: Sequence[tuple[str, str]] = (),
                    column_renames: Sequence[tuple[str, str, str]] = ()) -> str:
    """The text of snapshot ``number``: header, rename hints, then the statements."""
    created = created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"-- fluxon schema snapshot {number:05d}", f"-- created {created}",
             f"-- sha256 {_digest(statements)}"]
    lines += [f"-- fluxon:rename-table {quote(new)} from {quote(old)}" for new, old in table_renames]
    lines += [f"-- fluxon:rename-column {quote(table)}.{quote(new)} from {quote(old)}"
              for table, new, old in column_renames]
    return "\n".join(lines) + "\n\n" + _body(statements)


def _split_statements(text: str) -> list[str]:
    """Complete SQL statements of a snapshot body, comments outside statements dropped."""
    statements, pending = [], []
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending.append(line)
        chunk = "\n".join(pending)
        if sqlite3.complete_statement(chunk):
            statements.append(chunk.strip())
            pending = []
    if pending and "\n".join(pending).strip():
        raise SchemaError("snapshot ends in an incomplete statement: " + "\n".join(pending)[:200])
    return statements


def read_snapshot(path: str | os.PathLike) -> Snapshot:
    """Parse a snapshot file and check its hash; an edited body raises SchemaError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read snapshot {path}: {exc}") from exc
    lines = text.splitlines()
    header = _HEADER_RE.match(lines[0]) if lines else None
    if header is None:
        raise SchemaError(f"{path} is not a Fluxon schema snapshot (no '-- fluxon schema snapshot' header)")
    snapshot = Snapshot(int(header.group(1)), "", "", _split_statements(text), path=str(path))
    for line in lines[1:]:
        if match := _CREATED_RE.match(line):
            snapshot.created = match.group(1)
        elif match := _SHA_RE.match(line):
            snapshot.sha256 = match.group(1)
        elif match := _RENAME_TABLE_RE.match(line):
            snapshot.table_renames.append((_unquote(match.group(1)), _unquote(match.group(2))))
        elif match := _RENAME_COLUMN_RE.match(line):
            snapshot.column_renames.append(tuple(_unquote(g) for g in match.groups()))  # type: ignore[arg-type]
    actual = _digest(snapshot.statements)
    if snapshot.sha256 != actual:
        raise SchemaError(f"{path.name} was edited after it was saved (sha256 {actual[:12]} does not match "
                          f"the header's {snapshot.sha256[:12] or 'missing hash'}); save a new snapshot instead",
                          details={"path": str(path)})
    return snapshot


def snapshot_path(schema_dir: str | os.PathLike, number: int) -> Path:
    """Where snapshot ``number`` lives (five digits, as the original named them)."""
    return Path(schema_dir) / f"schema_{number:05d}.sql"


def _snapshot_numbers(schema_dir: str | os.PathLike) -> list[int]:
    folder = Path(schema_dir)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for name in os.listdir(folder) if (m := _FILE_RE.match(name)))


def _require_snapshot(schema_dir: str | os.PathLike, number: int) -> Snapshot:
    path = snapshot_path(schema_dir, number)
    if not path.exists():
        known = ", ".join(str(n) for n in _snapshot_numbers(schema_dir)) or "none"
        raise SchemaError(f"no snapshot {number} in {schema_dir} (saved snapshots: {known})")
    return read_snapshot(path)


def _all_renames(schema_dir: str | os.PathLike) -> Renames:
    """Rename hints of every readable snapshot in the folder (an edited one is skipped, with a warning)."""
    renames = Renames()
    for number in _snapshot_numbers(schema_dir):
        try:
            snapshot = read_snapshot(snapshot_path(schema_dir, number))
        except SchemaError as exc:
            log.warning("rename hints of snapshot %d ignored: %s", number, exc.message)
            continue
        for new, old in snapshot.table_renames:
            renames.add_table(new, old)
        for table, new, old in snapshot.column_renames:
            renames.add_column(table, new, old)
    return renames


# --------------------------------------------------------------------------- models -> snapshot

def _render_models(models: Any) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Statements and rename hints of a model set (a module, a list of models, ...)."""
    classes = collect_models(models)
    table_renames, column_renames = [], []
    for model in classes:
        meta = model._meta
        if meta.renamed_from:
            table_renames.append((meta.table_name, meta.renamed_from))
        for fld in meta.fields:
            if fld.renamed_from:
                # renamed_from names the old field; a relation's column is the field name + "_id"
                old = fld.renamed_from
                if fld.is_relation and not fld.column_name and not old.endswith("_id"):
                    old += "_id"
                column_renames.append((meta.table_name, fld.column, old))
    return schema_statements(classes), table_renames, column_renames


def save_schema(models: Any, schema_dir: str | os.PathLike) -> dict[str, Any]:
    """Write the models as the next ``schema_NNNNN.sql``; an unchanged model set writes nothing."""
    statements, table_renames, column_renames = _render_models(models)
    load_statements(statements)   # refuse to save a snapshot SQLite cannot run
    digest = _digest(statements)
    numbers = _snapshot_numbers(schema_dir)
    latest = None
    if numbers:
        try:
            latest = read_snapshot(snapshot_path(schema_dir, numbers[-1]))
        except SchemaError as exc:   # an edited latest snapshot cannot match; save a new one
            log.warning("%s", exc.message)
    if latest is not None and latest.sha256 == digest:
        return {"created": False, "number": latest.number, "path": latest.path, "sha256": digest,
                "message": f"models unchanged since {Path(latest.path or '').name}; nothing written"}
    number = (numbers[-1] + 1) if numbers else 1
    path = snapshot_path(schema_dir, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_snapshot(number, statements, table_renames=table_renames, column_renames=column_renames)
    try:
        with open(path, "x", encoding="utf-8") as out:   # never overwrite a snapshot
            out.write(text)
    except FileExistsError as exc:
        raise SchemaError(f"{path} appeared while saving; run saveschema again") from exc
    log.info("saved schema snapshot %s (%d statements)", path, len(statements))
    return {"created": True, "number": number, "path": str(path), "sha256": digest,
            "message": f"saved {path.name} ({len(statements)} statements)"}


# --------------------------------------------------------------------------- the live database

@contextmanager
def _database(db_path: str | os.PathLike, *, create: bool) -> Iterator[sqlite3.Connection]:
    """The database in autocommit mode, closed afterwards; SQLite errors become SchemaError.

    Without ``create`` a missing file reads as an empty database and is not created.
    """
    try:
        if not create and not Path(db_path).exists():
            conn = sqlite3.connect(":memory:", isolation_level=None)
        else:
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)   # SQLite creates the file, not its folder
            prepare_private_database(db_path)
            conn = sqlite3.connect(os.fspath(db_path), isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA cache_size = -131072")   # 128 MiB: a rebuild touches every page of the table
            conn.execute("PRAGMA threads = 2")             # lets CREATE INDEX sort with a helper thread
    except (sqlite3.Error, OSError) as exc:
        raise SchemaError(f"cannot open database {db_path}: {exc}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise SchemaError(f"database {db_path}: {exc}; nothing was changed") from exc
    finally:
        conn.close()


def _history(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (HISTORY_TABLE,)).fetchone()
    if not exists:
        return []
    rows = conn.execute(f'SELECT "snapshot", "sha256", "applied_at", "direction", "operations", "backup" '
                        f'FROM {quote(HISTORY_TABLE)} ORDER BY "id"').fetchall()
    return [{"number": r[0], "sha256": r[1], "applied_at": r[2], "direction": r[3], "operations": r[4],
             "backup": r[5]} for r in rows]


def current_schema(db_path: str | os.PathLike) -> dict[str, Any] | None:
    """The snapshot the database is on (number, sha256, applied_at, ...), or None if unrecorded.

    ``db_path``: a SQLite file, or a ``postgresql://`` URL (every function here takes either).
    """
    if is_postgres_url(db_path):
        return pg_current_schema(os.fspath(db_path))
    with _database(db_path, create=False) as conn:
        history = _history(conn)
    return history[-1] if history else None


def _recorded_schema(schema_dir: str | os.PathLike, current: dict[str, Any] | None) -> Schema | None:
    """The schema of the snapshot the database records, if that file still matches its hash."""
    if current is None or not snapshot_path(schema_dir, current["number"]).exists():
        return None
    try:
        snapshot = read_snapshot(snapshot_path(schema_dir, current["number"]))
    except SchemaError:
        return None
    return snapshot.schema() if snapshot.sha256 == current["sha256"] else None


def _direction(current: dict[str, Any] | None, number: int | None) -> str:
    if current is None:
        return "initial"
    if number is None or number == current["number"]:
        return "reapply"
    return "forward" if number > current["number"] else "backward"


def _plan(conn: sqlite3.Connection, schema_dir: str | os.PathLike, target: Schema,
          renames: Renames) -> tuple[list[Operation], dict[str, Any] | None]:
    history = _history(conn)
    current = history[-1] if history else None
    operations = diff_schemas(conn, introspect(conn), target, renames, _recorded_schema(schema_dir, current))
    return operations, current


def _plan_data(number: int | None, sha256: str, operations: Sequence[Operation],
               current: dict[str, Any] | None) -> dict[str, Any]:
    return {"number": number, "sha256": sha256, "current": current["number"] if current else None,
            "direction": _direction(current, number), "changed": bool(operations),
            "destructive": any(op.loss for op in operations),
            "operations": [op.to_dict() for op in operations]}


def list_schemas(schema_dir: str | os.PathLike, db_path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every saved snapshot, oldest first, with ``current`` marking the one the database is on."""
    current = current_schema(db_path) if db_path else None
    rows = []
    for number in _snapshot_numbers(schema_dir):
        path = snapshot_path(schema_dir, number)
        try:
            snapshot = read_snapshot(path)
            created, digest, problem = snapshot.created, snapshot.sha256, None
        except SchemaError as exc:
            created, digest, problem = "", "", exc.message
        row = {"number": number, "file": path.name, "created": created, "sha256": digest,
               "current": bool(current and current["number"] == number and current["sha256"] == digest)}
        if problem:
            row["problem"] = problem
        rows.append(row)
    return rows


def plan_schema(number: int | None, models: Any, schema_dir: str | os.PathLike,
                db_path: str | os.PathLike) -> dict[str, Any]:
    """What migrating the database to snapshot ``number`` would do, changing nothing.

    With ``number=None`` the target is the current ``models`` as they would be saved, which
    shows what ``save`` followed by ``apply`` would do.
    """
    renames = _all_renames(schema_dir)
    if number is None:
        if models is None:
            raise ConfigurationError("plan_schema needs a snapshot number or the models")
        statements, table_renames, column_renames = _render_models(models)
        for new, old in table_renames:
            renames.add_table(new, old)
        for table, new, old in column_renames:
            renames.add_column(table, new, old)
    else:
        statements = _require_snapshot(schema_dir, number).statements
    target = load_statements(statements)[0]
    if is_postgres_url(db_path):
        planned = Snapshot(number or 0, "", _digest(statements), list(statements))
        plan = pg_apply(os.fspath(db_path), number, planned, renames, schema_dir, dry_run=True, force=False,
                        plan_data=_plan_data, target=target)
        plan.pop("dry_run", None)
        plan.pop("message", None)
        return plan
    with _database(db_path, create=False) as conn:
        operations, current = _plan(conn, schema_dir, target, renames)
    return _plan_data(number, _digest(statements), operations, current)


def _backup(conn: sqlite3.Connection, db_path: str | os.PathLike, number: int) -> str:
    """A consistent copy of the database next to it (SQLite's online backup API)."""
    db = Path(db_path).resolve()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = db.with_name(f"{db.stem}.before-schema-{number:05d}-{stamp}{db.suffix or '.sqlite3'}")
    try:
        ensure_private_file(target)  # a copy of the data: as private as the database
        dest = sqlite3.connect(os.fspath(target))
    except (OSError, sqlite3.Error) as exc:
        raise SchemaError(f"could not create the backup {target}: {exc}; nothing was changed") from exc
    try:
        conn.backup(dest)
    except sqlite3.Error as exc:
        raise SchemaError(f"could not back up {db} to {target}: {exc}; nothing was changed") from exc
    finally:
        dest.close()
    return str(target)


def apply_schema(number: int, schema_dir: str | os.PathLike, db_path: str | os.PathLike, *,
                 dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    """Migrate the database to snapshot ``number`` in place, keeping its data.

    Steps that lose data raise :class:`DestructiveMigration` unless ``force``. ``dry_run``
    returns the plan only. A backup is written next to the database first (when it holds
    tables); a failure rolls everything back and raises :class:`SchemaError`.
    """
    snapshot = _require_snapshot(schema_dir, number)
    target = snapshot.schema()
    renames = _all_renames(schema_dir)
    if is_postgres_url(db_path):   # one transaction on the server: nothing to back up
        return pg_apply(os.fspath(db_path), number, snapshot, renames, schema_dir, dry_run=dry_run,
                        force=force, plan_data=_plan_data, target=target)
    with _database(db_path, create=not dry_run) as conn:
        operations, current = _plan(conn, schema_dir, target, renames)
        result = _plan_data(number, snapshot.sha256, operations, current)
        outcome = plan_outcome(result, operations, current, number, snapshot.sha256, dry_run=dry_run,
                               force=force)
        if outcome is not None:
            return outcome
        has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        backup = _backup(conn, db_path, number) if operations and has_tables else None
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        def record(tx: sqlite3.Connection) -> None:
            tx.execute(_HISTORY_DDL)
            tx.execute(f'INSERT INTO {quote(HISTORY_TABLE)} ("snapshot", "sha256", "applied_at", "direction", '
                       '"operations", "backup") VALUES (?, ?, ?, ?, ?, ?)',
                       (number, snapshot.sha256, now, result["direction"], len(operations), backup))

        try:
            execute_plan(conn, operations, target, record=record)
        except SchemaError as exc:
            if backup:
                exc.details.setdefault("backup", backup)
            raise
        result["normalized_datetimes"] = _normalize_datetimes(conn)
        log.info("database %s migrated to schema %d (%d operations, backup %s)",
                 db_path, number, len(operations), backup)
        result.update(backup=backup, message=(f"migrated to schema {number} ({len(operations)} operations)"
                                              + (f"; backup: {backup}" if backup else "")))
        return result


def normalize_database_datetimes(db_path: str | os.PathLike) -> dict[str, Any]:
    """Rewrite the DATETIME values of the database at ``db_path`` in UTC (``fluxon schema utc``).

    ``apply_schema`` does it after every migration; this is the step for a database that is
    on its snapshot already.
    """
    with _database(db_path, create=False) as conn:
        changed = _normalize_datetimes(conn)
    return {"normalized_datetimes": changed,
            "message": f"rewrote {changed} datetime values in UTC" if changed
            else "every datetime value is stored in UTC already"}


def _normalize_datetimes(conn: sqlite3.Connection) -> int:
    """Rewrite DATETIME values stored before the UTC rule (``fluxon.database.utc``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = normalize_datetimes(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if changed:
        log.info("rewrote %d datetime values in UTC", changed)
    return changed


# --------------------------------------------------------------------------- Router conveniences

def _router_setting(router: Any, name: str) -> Any:
    value = getattr(router, name, None)
    if not value:
        raise ConfigurationError(f"schema commands need Router({name}=...) in the application")
    return value


def save_router_schema(router: Any) -> dict[str, Any]:
    """:func:`save_schema` with the Router's models and schema folder."""
    return save_schema(_router_setting(router, "models"), _router_setting(router, "database_schema_dir"))


def _router_database(router: Any, *, required: bool = True) -> str | None:
    """The Router's PostgreSQL URL or SQLite path."""
    value = getattr(router, "database_url", None) or getattr(router, "database_path", None)
    if not value and required:
        raise ConfigurationError("schema commands need Router(database_path=...) or "
                                 "Router(database_url=...) in the application")
    return value


def list_router_schemas(router: Any) -> list[dict[str, Any]]:
    """:func:`list_schemas` for the Router's schema folder and database."""
    return list_schemas(_router_setting(router, "database_schema_dir"), _router_database(router, required=False))


def plan_router_schema(router: Any, number: int | None) -> dict[str, Any]:
    """:func:`plan_schema` for the Router (``number=None``: its current models)."""
    return plan_schema(number, getattr(router, "models", None), _router_setting(router, "database_schema_dir"),
                       _router_database(router))


def apply_router_schema(router: Any, number: int, *, dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    """:func:`apply_schema` for the Router's schema folder and database."""
    return apply_schema(number, _router_setting(router, "database_schema_dir"),
                        _router_database(router), dry_run=dry_run, force=force)


# --------------------------------------------------------------------------- the `fluxon schema` CLI

def _load_app(app: str) -> Any:
    try:
        return load_router(app)
    except FluxonError as exc:
        raise click.ClickException(exc.message) from exc


def _plan_lines(plan: dict[str, Any]) -> list[str]:
    lines = []
    for op in plan.get("operations", []):
        mark = "  [DESTRUCTIVE] " if op["destructive"] else "  "
        lines.append(f"{mark}{op['description']}" + (f" -- loses: {op['loss']}" if op["loss"] else ""))
        lines += [f"      warning: {warning}" for warning in op["warnings"]]
    return lines


def _emit(data: Any, as_json: bool, lines: list[str]) -> None:
    click.echo(_json.dumps(data, indent=2, default=str) if as_json else "\n".join(lines))


def _run(call: Any) -> Any:
    try:
        return call()
    except FluxonError as exc:
        raise click.ClickException(exc.message) from exc


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.group("schema")
def schema_cli() -> None:
    """Schema snapshots and migrations, offline (no broker needed). APP is package.module:router."""


@schema_cli.command("save")
@click.argument("app")
@_json_option
def save_command(app: str, as_json: bool) -> None:
    """Snapshot APP's models as the next schema_NNNNN.sql (nothing is written if unchanged)."""
    result = _run(lambda: save_router_schema(_load_app(app)))
    _emit(result, as_json, [result["message"]])


@schema_cli.command("list")
@click.argument("app")
@_json_option
def list_command(app: str, as_json: bool) -> None:
    """List the saved snapshots; '*' marks the one the database is on."""
    rows = _run(lambda: list_router_schemas(_load_app(app)))
    lines = [f"{'*' if row['current'] else ' '} {row['number']:05d}  {row['created'] or '?':20}  "
             f"{row['sha256'][:12] or '?':12}  {row.get('problem', '')}".rstrip() for row in rows]
    _emit(rows, as_json, lines or ["no snapshots saved yet (run: fluxon schema save APP)"])


@schema_cli.command("plan")
@click.argument("number", type=int)
@click.argument("app")
@_json_option
def plan_command(number: int, app: str, as_json: bool) -> None:
    """Show what migrating APP's database to snapshot NUMBER would do, changing nothing."""
    plan = _run(lambda: plan_router_schema(_load_app(app), number))
    head = (f"schema {plan['current'] or 'none'} -> {number} ({plan['direction']}): "
            f"{len(plan['operations'])} operations" if plan["changed"]
            else f"the database already matches schema {number}")
    _emit(plan, as_json, [head, *_plan_lines(plan)])


@schema_cli.command("utc")
@click.argument("app")
@_json_option
def utc_command(app: str, as_json: bool) -> None:
    """Rewrite APP's datetimes stored with another offset (or none) in UTC; apply does it too."""
    result = _run(lambda: normalize_database_datetimes(
        _router_setting(_load_app(app), "database_path")))
    _emit(result, as_json, [result["message"]])


@schema_cli.command("apply")
@click.argument("number", type=int)
@click.argument("app")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--force", is_flag=True, help="Accept steps that lose data (dropped tables/columns).")
@_json_option
def apply_command(number: int, app: str, dry_run: bool, force: bool, as_json: bool) -> None:
    """Migrate APP's database to snapshot NUMBER in place, after a backup next to it."""
    result = _run(lambda: apply_router_schema(_load_app(app), number, dry_run=dry_run, force=force))
    sql = [f"  {statement};" for statement in result.get("sql", [])] if dry_run else []
    _emit(result, as_json, [result["message"], *_plan_lines(result), *(["SQL:", *sql] if sql else [])])
