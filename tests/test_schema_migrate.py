"""updateschema N on real SQLite files: data survives every move, failures change nothing.

Snapshot 1 is the seed's school models (tests/apps/school_v1.py), snapshot 2 changes one thing
of each kind (tests/apps/school_v2.py). Some failure cases use hand-written snapshots.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from apps import school_v1, school_v2
from fluxon.database.diff import Renames, diff_schemas
from fluxon.database.introspect import introspect
from fluxon.database.migrate import execute_plan
from fluxon.database.schema import (apply_schema, current_schema, plan_schema, read_snapshot, render_snapshot,
                                    save_schema, snapshot_path)
from fluxon.errors import DestructiveMigration, SchemaError

SEED_ROWS = """
INSERT INTO "User" (id, username, password, email, user_creation_date) VALUES
    (1, 'tina', 'h1', 'tina@school', '2020-01-01 10:00:00'),
    (2, 'sam', 'h2', 'sam@school', '2020-01-02 10:00:00'),
    (3, 'sue', 'h3', 'sue@school', '2020-01-03 10:00:00'),
    (4, 'tom', 'h4', 'tom@school', '2020-01-04 10:00:00');
INSERT INTO "Teacher" (user_id, name, department) VALUES (1, 'Tina', 'Maths'), (4, 'Tom', 'Physics');
INSERT INTO "Course" (id, course_name, course_code, teacher_id) VALUES
    (10, 'Algebra', 'M101', 1), (11, 'Geometry', 'M102', 1), (12, 'Mechanics', 'P101', 4);
INSERT INTO "Student" (user_id, name, birth_date) VALUES (2, 'Sam', '2001-05-06'), (3, 'Sue', '2002-07-08');
INSERT INTO "Enrollment" (id, student_id, course_id, date_enrolled) VALUES
    (100, 2, 10, '2021-09-01'), (101, 2, 12, '2021-09-01'), (102, 3, 11, '2021-09-02');
"""


def rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def write(db: Path, *statements: str | tuple) -> None:
    """Run statements (text, or (text, params)) on their own connection and commit."""
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def signature(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        return introspect(conn).signature()
    finally:
        conn.close()


def table_sql(db: Path) -> dict[str, str]:
    return dict(rows(db, "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                         "AND name NOT LIKE 'sqlite_%' AND name <> 'fluxon_schema_history'"))


def fresh(tmp_path: Path, schema_dir: Path, number: int) -> Path:
    """A new database made by running the snapshot file itself."""
    db = tmp_path / f"fresh_{number}.sqlite3"
    if db.exists():
        return db
    conn = sqlite3.connect(db)
    conn.executescript(snapshot_path(schema_dir, number).read_text())
    conn.close()
    return db


def fingerprint(db: Path) -> tuple[str, list[str]]:
    """The file's bytes and its logical content, to show a failed migration changed nothing."""
    conn = sqlite3.connect(db)
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    return hashlib.sha256(db.read_bytes()).hexdigest(), dump


@pytest.fixture
def school(tmp_path: Path) -> tuple[Path, Path]:
    """Snapshots 1 and 2 saved, and a database on snapshot 1 filled with rows."""
    schema_dir, db = tmp_path / "schema", tmp_path / "school.sqlite3"
    assert save_schema(school_v1, schema_dir)["number"] == 1
    assert save_schema(school_v2, schema_dir)["number"] == 2
    apply_schema(1, schema_dir, db)
    conn = sqlite3.connect(db)
    conn.executescript(SEED_ROWS)
    conn.close()
    return schema_dir, db


def test_forward_migration_keeps_every_surviving_value(school, tmp_path):
    schema_dir, db = school
    with pytest.raises(DestructiveMigration) as refused:
        apply_schema(2, schema_dir, db)
    assert "Teacher.department" in refused.value.message
    assert current_schema(db)["number"] == 1

    result = apply_schema(2, schema_dir, db, force=True)

    assert result["direction"] == "forward" and result["changed"]
    assert Path(result["backup"]).exists()
    assert rows(Path(result["backup"]), "SELECT department FROM Teacher ORDER BY user_id") == [("Maths",), ("Physics",)]
    assert rows(db, "SELECT user_id, name FROM Teacher ORDER BY user_id") == [(1, "Tina"), (4, "Tom")]
    assert rows(db, "SELECT id, course_name, course_code, teacher_id, credits FROM Course ORDER BY id") == [
        (10, "Algebra", "M101", 1, 3), (11, "Geometry", "M102", 1, 3), (12, "Mechanics", "P101", 4, 3)]
    assert rows(db, "SELECT user_id, full_name, birth_date FROM Student ORDER BY user_id") == [
        (2, "Sam", "2001-05-06"), (3, "Sue", "2002-07-08")]
    assert rows(db, "SELECT id, student_id, course_id FROM Enrollment ORDER BY id") == [
        (100, 2, 10), (101, 2, 12), (102, 3, 11)]
    assert rows(db, "SELECT COUNT(*) FROM User") == [(4,)]
    assert rows(db, "PRAGMA foreign_key_check") == []
    # the migrated schema is exactly what snapshot 2 makes of an empty database, text included
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 2))
    assert table_sql(db) == table_sql(fresh(tmp_path, schema_dir, 2))
    # the new nullable column and the new table are usable
    write(db, "PRAGMA foreign_keys = ON", "INSERT INTO Student (user_id, full_name, birth_date) VALUES (4, 'Tom', NULL)",
          "INSERT INTO Classroom (name) VALUES ('Lab')")
    assert current_schema(db)["number"] == 2


def test_alternating_between_snapshots_keeps_rows(school, tmp_path):
    schema_dir, db = school
    apply_schema(2, schema_dir, db, force=True)
    write(db, "UPDATE Course SET credits = 5 WHERE id = 10")

    back = apply_schema(1, schema_dir, db, force=True)   # drops Course.credits and Classroom
    assert back["direction"] == "backward"
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 1))
    assert rows(db, "SELECT user_id, name, birth_date FROM Student ORDER BY user_id") == [
        (2, "Sam", "2001-05-06"), (3, "Sue", "2002-07-08")]
    # department was dropped with --force: it comes back holding its default
    assert rows(db, "SELECT user_id, name, department FROM Teacher ORDER BY user_id") == [
        (1, "Tina", ""), (4, "Tom", "")]

    again = apply_schema(2, schema_dir, db)   # nothing to lose this time: no force needed
    assert again["direction"] == "forward"
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 2))
    assert rows(db, "SELECT id, credits FROM Course ORDER BY id") == [(10, 3), (11, 3), (12, 3)]
    assert rows(db, "SELECT user_id, full_name FROM Student ORDER BY user_id") == [(2, "Sam"), (3, "Sue")]
    assert rows(db, "SELECT id, student_id, course_id FROM Enrollment ORDER BY id") == [
        (100, 2, 10), (101, 2, 12), (102, 3, 11)]
    history = rows(db, 'SELECT snapshot, direction FROM fluxon_schema_history ORDER BY id')
    assert history == [(1, "initial"), (2, "forward"), (1, "backward"), (2, "forward")]


def test_rebuilding_a_cascade_parent_keeps_the_children(school):
    """Student and Teacher are rebuilt; Enrollment and Course reference them ON DELETE CASCADE.

    The migrating connection starts with foreign keys ON, as a worker's does: if the engine
    did not switch them off, dropping the old parent tables would delete every child row.
    """
    schema_dir, db = school
    target = read_snapshot(snapshot_path(schema_dir, 2)).schema()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    renames = Renames()
    renames.add_column("Student", "full_name", "name")
    operations = diff_schemas(conn, introspect(conn), target, renames)
    assert {"Student", "Teacher"} <= {op.table for op in operations if op.kind == "rebuild_table"}

    execute_plan(conn, operations, target)

    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,), "restored after the migration"
    assert conn.execute("SELECT COUNT(*) FROM Enrollment").fetchone() == (3,)
    assert conn.execute("SELECT COUNT(*) FROM Course").fetchone() == (3,)
    conn.execute("DELETE FROM Student WHERE user_id = 2")   # the cascade still works afterwards
    assert conn.execute("SELECT id FROM Enrollment ORDER BY id").fetchall() == [(102,)]
    conn.close()


def test_applying_the_current_snapshot_again_is_a_noop(school):
    schema_dir, db = school
    before = fingerprint(db)
    result = apply_schema(1, schema_dir, db)
    assert result["changed"] is False and "nothing to do" in result["message"]
    assert fingerprint(db) == before
    assert not list(db.parent.glob("*.before-schema-*"))


def test_dry_run_prints_the_plan_and_changes_nothing(school):
    schema_dir, db = school
    before = fingerprint(db)
    result = apply_schema(2, schema_dir, db, dry_run=True)
    assert result["dry_run"] and result["destructive"]
    words = [op["description"] for op in result["operations"]]
    assert "create table Classroom" in words
    assert any(w.startswith("rebuild table Student: rename column name to full_name") for w in words)
    assert any("drop column department" in w for w in words)
    assert fingerprint(db) == before


def test_plan_for_unsaved_models_uses_their_rename_hints(school):
    schema_dir, db = school
    plan = plan_schema(None, school_v2, schema_dir, db)
    student = next(op for op in plan["operations"] if op["table"] == "Student")
    assert "rename column name to full_name" in student["description"]


def _snapshot_from(schema_dir: Path, base: int, number: int, replace: tuple[str, str], **hints) -> None:
    statements = read_snapshot(snapshot_path(schema_dir, base)).statements
    changed = [s.replace(*replace) for s in statements]
    assert changed != statements, "the replacement must change the snapshot"
    snapshot_path(schema_dir, number).write_text(render_snapshot(number, changed, **hints))


@pytest.mark.parametrize("replace, blocker", [
    # a unique constraint existing rows violate (Enrollment is rebuilt after User and Teacher)
    (('"date_enrolled" DATE NOT NULL', '"date_enrolled" DATE NOT NULL UNIQUE'), "UNIQUE constraint failed"),
    # a NOT NULL column without a default on a non-empty table
    (('"date_enrolled" DATE NOT NULL', '"date_enrolled" DATE NOT NULL, "grade" INTEGER NOT NULL'),
     "NOT NULL constraint failed"),
])
def test_a_failing_migration_changes_nothing_and_names_the_rows(school, replace, blocker):
    schema_dir, db = school
    apply_schema(2, schema_dir, db, force=True)
    _snapshot_from(schema_dir, 2, 3, replace)
    # make it fail half-way: an earlier table changes successfully first
    statements = read_snapshot(snapshot_path(schema_dir, 3)).statements
    statements = [s.replace('"email" VARCHAR(130)', '"email" VARCHAR(140)') for s in statements]
    snapshot_path(schema_dir, 3).write_text(render_snapshot(3, statements))
    plan = plan_schema(3, None, schema_dir, db)
    assert [op["table"] for op in plan["operations"]][:1] == ["User"]
    before = fingerprint(db)

    with pytest.raises(SchemaError) as failed:
        apply_schema(3, schema_dir, db)

    assert blocker in failed.value.message and "unchanged" in failed.value.message
    assert "Enrollment" in failed.value.details["operation"]
    blocking = failed.value.details["blocking_rows"]
    if blocker.startswith("UNIQUE"):
        assert blocking == [{"values": ["2021-09-01"], "rowids": [100, 101]}]
    else:
        assert blocking == [100, 101, 102] and failed.value.details["blocking_count"] == 3
    assert Path(failed.value.details["backup"]).exists()
    assert fingerprint(db) == before
    assert current_schema(db)["number"] == 2


def test_foreign_key_violations_block_the_migration(school):
    schema_dir, db = school
    apply_schema(2, schema_dir, db, force=True)
    # Classroom gains a NOT NULL reference to Teacher, defaulting to a teacher that does not exist
    _snapshot_from(schema_dir, 2, 3, ('"capacity" INTEGER NOT NULL DEFAULT 30',
                                      '"capacity" INTEGER NOT NULL DEFAULT 30, "teacher_id" INTEGER '
                                      'NOT NULL DEFAULT 99 REFERENCES "Teacher" ("user_id")'))
    write(db, "INSERT INTO Classroom (name) VALUES ('Lab')")
    before = fingerprint(db)
    with pytest.raises(SchemaError) as failed:
        apply_schema(3, schema_dir, db)
    assert "violate foreign keys" in failed.value.message and "Classroom rowid 1 -> Teacher" in failed.value.message
    assert failed.value.details["count"] == 1
    assert fingerprint(db) == before


def test_narrowing_with_longer_values_is_destructive(school):
    schema_dir, db = school
    apply_schema(2, schema_dir, db, force=True)
    write(db, ("UPDATE Course SET course_name = ? WHERE id = 11", ("G" * 150,)))
    with pytest.raises(DestructiveMigration) as refused:
        apply_schema(1, schema_dir, db)
    assert "1 values in Course.course_name are longer than the new VARCHAR(100)" in refused.value.message
    apply_schema(1, schema_dir, db, force=True)   # SQLite keeps the text; the ORM validates on write
    assert rows(db, "SELECT length(course_name) FROM Course WHERE id = 11") == [(150,)]


def test_table_rename_hint_moves_the_rows_both_ways(school, tmp_path):
    schema_dir, db = school
    statements = read_snapshot(snapshot_path(schema_dir, 1)).statements
    renamed = [s.replace('"Course"', '"Subject"').replace("idx_Course_", "idx_Subject_") for s in statements]
    snapshot_path(schema_dir, 3).write_text(render_snapshot(3, renamed, table_renames=[("Subject", "Course")]))

    result = apply_schema(3, schema_dir, db)
    # children's references follow the rename (SQLite rewrites them): nothing is rebuilt
    assert [op["kind"] for op in result["operations"]] == ["rename_table", "drop_index", "create_index"]
    assert rows(db, "SELECT id, course_name FROM Subject ORDER BY id") == [
        (10, "Algebra"), (11, "Geometry"), (12, "Mechanics")]
    assert rows(db, "SELECT COUNT(*) FROM Enrollment") == [(3,)]
    assert rows(db, "PRAGMA foreign_key_check") == []
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 3))

    apply_schema(1, schema_dir, db)   # the same hint, read the other way
    assert rows(db, "SELECT id FROM Course ORDER BY id") == [(10,), (11,), (12,)]
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 1))


def test_added_column_uses_alter_table_and_keeps_autoincrement(school, tmp_path):
    schema_dir, db = school
    _snapshot_from(schema_dir, 1, 3, ('"date_enrolled" DATE NOT NULL',
                                      '"date_enrolled" DATE NOT NULL, "note" TEXT DEFAULT \'\''))
    write(db, "DELETE FROM Enrollment WHERE id = 102")   # AUTOINCREMENT must never reuse 102
    result = apply_schema(3, schema_dir, db)
    assert [op["kind"] for op in result["operations"]] == ["add_column"]
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 3))
    apply_schema(1, schema_dir, db)   # the column held only defaults: not destructive
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO Enrollment (student_id, course_id, date_enrolled) VALUES (3, 10, '2022-01-01')")
    conn.commit()
    assert conn.execute("SELECT MAX(id) FROM Enrollment").fetchone() == (103,)
    conn.close()


def test_missing_snapshot_and_edited_snapshot_are_refused(school):
    schema_dir, db = school
    with pytest.raises(SchemaError, match="no snapshot 7"):
        apply_schema(7, schema_dir, db)
    path = snapshot_path(schema_dir, 2)
    path.write_text(path.read_text().replace("VARCHAR(200)", "VARCHAR(300)"))
    with pytest.raises(SchemaError, match="edited after it was saved"):
        apply_schema(2, schema_dir, db)


def test_check_constraint_changes_are_seen_through_the_snapshot_text(school):
    """PRAGMAs cannot see CHECK; the recorded snapshot's text can, and failing rows are named."""
    schema_dir, db = school
    apply_schema(2, schema_dir, db, force=True)
    _snapshot_from(schema_dir, 2, 3, ('"credits" INTEGER NOT NULL DEFAULT 3',
                                      '"credits" INTEGER NOT NULL DEFAULT 3 CHECK ("credits" >= 0)'))
    plan = plan_schema(3, None, schema_dir, db)
    assert [op["description"] for op in plan["operations"]] == [
        "rebuild table Course: definition text changes (CHECK, COLLATE or similar); recreate 2 indexes"]
    write(db, "UPDATE Course SET credits = -1 WHERE id IN (11, 12)")
    before = fingerprint(db)
    with pytest.raises(SchemaError) as failed:
        apply_schema(3, schema_dir, db)
    assert "CHECK constraint failed" in failed.value.message
    assert failed.value.details["blocking_rows"] == [11, 12], failed.value.message
    assert fingerprint(db) == before
    write(db, "UPDATE Course SET credits = 0 WHERE credits < 0")
    apply_schema(3, schema_dir, db)
    assert rows(db, "SELECT id, credits FROM Course ORDER BY id") == [(10, 3), (11, 0), (12, 0)]


def test_a_pure_column_rename_is_done_in_place_and_references_follow(school, tmp_path):
    """Renaming Teacher's primary key: ALTER TABLE RENAME COLUMN, and Course's foreign key follows."""
    schema_dir, db = school
    statements = []
    for statement in read_snapshot(snapshot_path(schema_dir, 1)).statements:
        if statement.startswith('CREATE TABLE "Teacher"'):
            statement = statement.replace('"user_id"', '"account_id"')
        statements.append(statement.replace('REFERENCES "Teacher" ("user_id")', 'REFERENCES "Teacher" ("account_id")'))
    snapshot_path(schema_dir, 3).write_text(
        render_snapshot(3, statements, column_renames=[("Teacher", "account_id", "user_id")]))

    result = apply_schema(3, schema_dir, db)
    assert [op["description"] for op in result["operations"]] == ["rename column Teacher.user_id to account_id"]
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 3))
    assert rows(db, "SELECT account_id, name FROM Teacher ORDER BY 1") == [(1, "Tina"), (4, "Tom")]
    assert rows(db, "PRAGMA foreign_key_check") == []

    back = apply_schema(1, schema_dir, db)
    assert [op["kind"] for op in back["operations"]] == ["rename_column"]
    assert signature(db) == signature(fresh(tmp_path, schema_dir, 1))
