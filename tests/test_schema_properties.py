"""Property: between any two random table definitions, a migration either reaches the target with
every surviving value intact, or fails with SchemaError and leaves the file exactly as it was."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fluxon.database.introspect import introspect
from fluxon.database.schema import apply_schema, render_snapshot, snapshot_path
from fluxon.errors import DestructiveMigration, SchemaError

NAMES = ["a", "b", "c", "d"]
TYPES = ["TEXT", "INTEGER", "VARCHAR(20)", "REAL"]
AFFINITY = {"TEXT": "text", "VARCHAR(20)": "text", "INTEGER": "integer", "REAL": "real"}

column = st.fixed_dictionaries({
    "type": st.sampled_from(TYPES),
    "notnull": st.booleans(),
    "default": st.sampled_from([None, "0", "'x'"]),
    "unique": st.booleans(),
})
table = st.fixed_dictionaries({
    "columns": st.dictionaries(st.sampled_from(NAMES), column, min_size=0, max_size=4),
    "index": st.sampled_from([None, *NAMES]),
})


def statements(spec: dict, renamed: str | None = None) -> list[str]:
    """The snapshot of ``spec``; the column ``renamed`` is called ``<name>_new``."""
    def sql_name(name: str) -> str:
        return f"{name}_new" if name == renamed else name
    cols = ['"id" INTEGER NOT NULL PRIMARY KEY']
    for name in NAMES:   # a fixed order, so column i always means the same name
        if name in spec["columns"]:
            c = spec["columns"][name]
            cols.append(f'"{sql_name(name)}" {c["type"]}' + (" NOT NULL" if c["notnull"] else "")
                        + (f' DEFAULT {c["default"]}' if c["default"] else "") + (" UNIQUE" if c["unique"] else ""))
    out = ['CREATE TABLE "t" (' + ", ".join(cols) + ")",
           'CREATE TABLE "child" ("id" INTEGER NOT NULL PRIMARY KEY, '
           '"t_id" INTEGER NOT NULL REFERENCES "t" ("id") ON DELETE CASCADE)']
    if spec["index"] in spec["columns"]:
        out.append(f'CREATE INDEX "idx_t_{spec["index"]}" ON "t" ("{sql_name(spec["index"])}")')
    return out


def value(kind: str, i: int):
    return {"text": f"v{i}", "integer": i, "real": i + 0.5}[kind]


def fingerprint(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=table, after=table, rows=st.integers(min_value=0, max_value=6),
       rename=st.sampled_from([None, *NAMES]))
def test_migration_reaches_the_target_or_changes_nothing(before, after, rows, rename):
    if rename not in before["columns"] or rename not in after["columns"]:
        rename = None   # only a column on both sides can be renamed (with a hint)
    with tempfile.TemporaryDirectory() as tmp:
        schema_dir, db = Path(tmp) / "schema", Path(tmp) / "db.sqlite3"
        schema_dir.mkdir()
        snapshot_path(schema_dir, 1).write_text(render_snapshot(1, statements(before)))
        hints = [("t", f"{rename}_new", rename)] if rename else []
        snapshot_path(schema_dir, 2).write_text(render_snapshot(2, statements(after, rename), column_renames=hints))
        apply_schema(1, schema_dir, db)
        conn = sqlite3.connect(db)
        names = [n for n in NAMES if n in before["columns"]]
        for i in range(1, rows + 1):   # distinct values satisfy every UNIQUE; every third is NULL where allowed
            values = [None if i % 3 == 0 and not before["columns"][n]["notnull"]
                      else value(AFFINITY[before["columns"][n]["type"]], i) for n in names]
            conn.execute(f'INSERT INTO "t" ("id"{"".join(", " + chr(34) + n + chr(34) for n in names)}) '
                         f'VALUES (?{", ?" * len(names)})', (i, *values))
            conn.execute('INSERT INTO "child" ("t_id") VALUES (?)', (i,))
        conn.commit()
        old_rows = {r[0]: r[1:] for r in conn.execute(
            f'SELECT "id"{"".join(", " + chr(34) + n + chr(34) for n in names)} FROM "t"')}
        conn.close()
        unchanged = fingerprint(db)

        try:
            apply_schema(2, schema_dir, db, force=True)
        except DestructiveMigration:   # force accepts every loss
            raise
        except SchemaError as exc:
            assert "unchanged" in exc.message
            assert fingerprint(db) == unchanged
            event("refused: " + str(exc.details.get("constraint", "other"))[:30])
            return
        event("migrated" + (" with a rename" if rename else ""))

        fresh = Path(tmp) / "fresh.sqlite3"
        conn = sqlite3.connect(fresh)
        conn.executescript(snapshot_path(schema_dir, 2).read_text())
        want = introspect(conn).signature()
        conn.close()
        conn = sqlite3.connect(db)
        assert introspect(conn).signature() == want
        assert conn.execute('SELECT COUNT(*) FROM "child"').fetchone() == (rows,)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for n in names:
            if n in after["columns"] and AFFINITY[after["columns"][n]["type"]] == AFFINITY[before["columns"][n]["type"]]:
                column = f"{n}_new" if n == rename else n
                got = dict(conn.execute(f'SELECT "id", "{column}" FROM "t"').fetchall())
                for i, old in ((i, r[names.index(n)]) for i, r in old_rows.items()):
                    if old is not None:
                        assert got[i] == old
                    else:   # a NULL stays NULL, or takes the default of a column that became NOT NULL
                        assert (got[i] is None) == (not after["columns"][n]["notnull"])
        conn.close()
