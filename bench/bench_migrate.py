"""How long `updateschema N` takes to rebuild a big table, against a plain copy of the same table.

    python bench/bench_migrate.py [--rows 1000000] [--repeat 3]

One database file (WAL, as workers open it) holds a table of ``--rows`` rows on snapshot 1.
Two variants run in the same process: the table alone, and the table with an index on a
text column (which the rebuild must recreate, a sort the plain copy does not do). Each round
copies the variant's file twice and measures, on the copies:

- baseline: ``CREATE TABLE new (...)`` + ``INSERT INTO new SELECT * FROM old`` in one
  transaction (the bare cost of moving the rows);
- migrate: ``apply_schema(2, ...)`` to a snapshot that widens a VARCHAR and makes a column
  nullable, which needs the full rebuild (backup next to the file, plan with its row counts,
  new table, copy, drop, rename, index, foreign_key_check, verification, history).

The goal (issue 5) is migrate < 3x baseline in the same run; the median ratio is reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fluxon.database.schema import apply_schema, render_snapshot, snapshot_path

TABLE_1 = ('CREATE TABLE "item" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, '
           '"qty" INTEGER NOT NULL, "price" REAL NOT NULL, "note" TEXT)')
TABLE_2 = ('CREATE TABLE "item" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(200) NOT NULL, '
           '"qty" INTEGER, "price" REAL NOT NULL, "note" TEXT)')
INDEX = 'CREATE INDEX "idx_item_name" ON "item" ("name")'


def _build(folder: Path, rows: int, with_index: bool) -> Path:
    schema_dir = folder / "schema"
    schema_dir.mkdir(parents=True)
    indexes = [INDEX] if with_index else []
    snapshot_path(schema_dir, 1).write_text(render_snapshot(1, [TABLE_1, *indexes]))
    snapshot_path(schema_dir, 2).write_text(render_snapshot(2, [TABLE_2, *indexes]))
    db = folder / "source.sqlite3"
    apply_schema(1, schema_dir, db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executemany('INSERT INTO "item" VALUES (?, ?, ?, ?, ?)',
                     ((i, f"item-{i:07d}", i % 97, i * 0.25, None if i % 3 else "note") for i in range(1, rows + 1)))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def _copy(db: Path, name: str) -> Path:
    target = db.with_name(name)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(db, target)
    return target


def _baseline(db: Path) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute('CREATE TABLE "new_item" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, '
                 '"qty" INTEGER NOT NULL, "price" REAL NOT NULL, "note" TEXT)')
    conn.execute('INSERT INTO "new_item" SELECT * FROM "item"')
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def _migrate(db: Path, schema_dir: Path) -> float:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    start = time.perf_counter()
    result = apply_schema(2, schema_dir, db)
    elapsed = time.perf_counter() - start
    if result.get("backup"):
        Path(result["backup"]).unlink()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, {args.rows:,} rows")
    with tempfile.TemporaryDirectory(prefix="fluxon-bench-migrate-") as tmp:
        for with_index in (False, True):
            folder = Path(tmp) / ("indexed" if with_index else "plain")
            db = _build(folder, args.rows, with_index)
            label = "table + index on name" if with_index else "table alone"
            print(f"{label}: {os.path.getsize(db) / 2**20:.1f} MiB")
            baselines, migrations, ratios = [], [], []
            for round_number in range(1, args.repeat + 1):
                base = _baseline(_copy(db, "baseline.sqlite3"))
                migrate = _migrate(_copy(db, "migrate.sqlite3"), folder / "schema")
                baselines.append(base)
                migrations.append(migrate)
                ratios.append(migrate / base)
                print(f"  round {round_number}: baseline {base:.3f} s, migrate {migrate:.3f} s, "
                      f"ratio {migrate / base:.2f}x")
            print(f"  median: baseline {statistics.median(baselines):.3f} s, migrate "
                  f"{statistics.median(migrations):.3f} s, ratio {statistics.median(ratios):.2f}x (goal < 3x)")
            for leftover in folder.glob("*.sqlite3*"):
                leftover.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
