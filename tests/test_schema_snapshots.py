"""saveschema / schemas / the `fluxon schema` CLI: snapshot files, their hash, and the empty database."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps import school_v1, school_v2
from fluxon.database import models as Models
from fluxon.cli import main
from fluxon.database.schema import (apply_schema, current_schema, list_schemas, read_snapshot, save_schema,
                                    snapshot_path)
from fluxon.errors import SchemaError
from test_schema_migrate import signature


def test_save_writes_a_numbered_hashed_snapshot_once(tmp_path):
    schema_dir = tmp_path / "schema"
    first = save_schema(school_v1, schema_dir)
    assert first["created"] and first["number"] == 1
    path = schema_dir / "schema_00001.sql"
    text = path.read_text()
    header = text.splitlines()[:3]
    assert header[0] == "-- fluxon schema snapshot 00001"
    assert re.fullmatch(r"-- created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", header[1])
    body = text.split("\n\n", 1)[1]
    assert header[2] == f"-- sha256 {hashlib.sha256(body.encode()).hexdigest()}" == f"-- sha256 {first['sha256']}"
    assert body.index('CREATE TABLE "User"') < body.index('CREATE TABLE "Teacher"') < body.index(
        'CREATE TABLE "Enrollment"')

    again = save_schema(school_v1, schema_dir)
    assert not again["created"] and again["number"] == 1 and "unchanged" in again["message"]
    assert sorted(p.name for p in schema_dir.iterdir()) == ["schema_00001.sql"]
    assert path.read_text() == text

    second = save_schema(school_v2, schema_dir)
    assert second["created"] and second["number"] == 2
    snapshot = read_snapshot(snapshot_path(schema_dir, 2))
    assert snapshot.column_renames == [("Student", "full_name", "name")]
    assert '-- fluxon:rename-column "Student"."full_name" from "name"' in snapshot_path(schema_dir, 2).read_text()


def test_snapshots_are_deterministic(tmp_path):
    save_schema(school_v1, tmp_path / "a")
    save_schema(school_v1, tmp_path / "b")
    assert read_snapshot(tmp_path / "a" / "schema_00001.sql").statements == \
        read_snapshot(tmp_path / "b" / "schema_00001.sql").statements


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace("VARCHAR(130)", "VARCHAR(131)"), "edited after it was saved"),
    (lambda t: t.replace("-- fluxon schema snapshot", "-- some snapshot"), "not a Fluxon schema snapshot"),
    (lambda t: t.rstrip().rstrip(";"), "incomplete statement"),
])
def test_tampered_snapshots_are_refused(tmp_path, edit, problem):
    save_schema(school_v1, tmp_path)
    path = tmp_path / "schema_00001.sql"
    path.write_text(edit(path.read_text()))
    with pytest.raises(SchemaError, match=problem):
        read_snapshot(path)


def test_hand_added_rename_hints_do_not_change_the_hash(tmp_path):
    save_schema(school_v1, tmp_path)
    path = tmp_path / "schema_00001.sql"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(3, '-- fluxon:rename-table "Course" from "Subject"\n')
    path.write_text("".join(lines))
    assert read_snapshot(path).table_renames == [("Course", "Subject")]


def test_empty_database_equals_running_the_snapshot_file(tmp_path):
    schema_dir = tmp_path / "schema"
    save_schema(school_v2, schema_dir)
    migrated, by_hand = tmp_path / "migrated.sqlite3", tmp_path / "by_hand.sqlite3"
    result = apply_schema(1, schema_dir, migrated)
    assert result["direction"] == "initial" and result["backup"] is None
    conn = sqlite3.connect(by_hand)
    conn.executescript(snapshot_path(schema_dir, 1).read_text())
    conn.close()
    assert signature(migrated) == signature(by_hand)
    query = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name <> ? ORDER BY name"
    conn_a, conn_b = sqlite3.connect(migrated), sqlite3.connect(by_hand)
    assert conn_a.execute(query, ("fluxon_schema_history",)).fetchall() == \
        conn_b.execute(query, ("fluxon_schema_history",)).fetchall()
    conn_a.close()
    conn_b.close()
    assert current_schema(migrated)["number"] == 1


def test_database_made_by_hand_is_recorded_without_changes(tmp_path):
    """A database built by running the file: applying that snapshot only records it."""
    schema_dir, db = tmp_path / "schema", tmp_path / "db.sqlite3"
    save_schema(school_v1, schema_dir)
    conn = sqlite3.connect(db)
    conn.executescript(snapshot_path(schema_dir, 1).read_text())
    conn.close()
    assert current_schema(db) is None
    result = apply_schema(1, schema_dir, db)
    assert result["operations"] == [] and current_schema(db)["number"] == 1


def test_list_marks_the_current_snapshot(tmp_path):
    schema_dir, db = tmp_path / "schema", tmp_path / "db.sqlite3"
    assert list_schemas(schema_dir, db) == []
    save_schema(school_v1, schema_dir)
    save_schema(school_v2, schema_dir)
    assert [row["current"] for row in list_schemas(schema_dir, db)] == [False, False]
    assert not db.exists(), "listing must not create the database"
    apply_schema(2, schema_dir, db)
    listed = list_schemas(schema_dir, db)
    assert [(row["number"], row["file"], row["current"]) for row in listed] == [
        (1, "schema_00001.sql", False), (2, "schema_00002.sql", True)]


@pytest.fixture
def app(tmp_path, monkeypatch):
    """Two importable apps (models v1 and v2) sharing one schema folder and database."""
    for name, models in (("school_app1", "school_v1"), ("school_app2", "school_v2")):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
            from apps import {models} as models
            from fluxon.routing import Router
            router = Router(mapping={{}}, models=models, database_schema_dir="schema",
                            database_path="school.sqlite3")
        """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["schema", *args])
    return result.exit_code, result.output


def test_cli_save_list_plan_apply(app):
    assert invoke("save", "school_app1:router") == (0, "saved schema_00001.sql (8 statements)\n")
    code, out = invoke("save", "school_app1:router")
    assert code == 0 and "unchanged" in out
    assert invoke("apply", "1", "school_app1:router")[0] == 0
    conn = sqlite3.connect(app / "school.sqlite3")
    conn.executescript("""
        INSERT INTO User (id, username, password, email, user_creation_date) VALUES (1, 't', 'p', 'e', 'd');
        INSERT INTO Teacher (user_id, name, department) VALUES (1, 'Tina', 'Maths');
    """)
    conn.close()
    assert invoke("save", "school_app2:router")[0] == 0

    code, out = invoke("list", "school_app2:router")
    assert code == 0 and re.search(r"^\* 00001 ", out, re.M) and re.search(r"^  00002 ", out, re.M)

    code, out = invoke("plan", "2", "school_app2:router")
    assert code == 0 and out.startswith("schema 1 -> 2 (forward)")
    assert "[DESTRUCTIVE] rebuild table Teacher: drop column department" in out

    code, out = invoke("apply", "2", "school_app2:router")
    assert code == 1 and "would lose data" in out and "--force" in out
    code, out = invoke("apply", "2", "school_app2:router", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dry_run"] is True
    assert current_schema(app / "school.sqlite3")["number"] == 1

    code, out = invoke("apply", "2", "school_app2:router", "--force")
    assert code == 0 and "migrated to schema 2" in out and "backup: " in out
    backup = Path(out.split("backup: ", 1)[1].splitlines()[0])
    assert backup.parent == app and backup.exists()
    code, out = invoke("list", "school_app2:router", "--json")
    assert [row["current"] for row in json.loads(out)] == [False, True]


def test_cli_reports_errors_without_traceback(app):
    code, out = invoke("apply", "3", "school_app1:router")
    assert code == 1 and "Error: no snapshot 3" in out
    code, out = invoke("list", "no_such_module:router")
    assert code == 1 and "cannot import" in out


def test_worker_admin_jobs_reach_these_functions_and_return_json(tmp_path):
    """The broker console's saveschema / updateschema N / schemas run through the worker's ADMIN table."""
    from fluxon.routing import Router
    from fluxon.worker.admin import run_admin

    db = tmp_path / "school.sqlite3"
    router = Router(mapping={}, models=school_v1, database_schema_dir=str(tmp_path / "schema"),
                    database_path=str(db))
    ok, saved = run_admin(router, {"op": "saveschema"})
    assert ok and saved["number"] == 1
    ok, planned = run_admin(router, {"op": "updateschema", "number": 1, "dry_run": True, "force": False})
    assert ok and planned["dry_run"] and not db.exists()
    ok, applied = run_admin(router, {"op": "updateschema", "number": 1, "dry_run": False, "force": False})
    assert ok and applied["direction"] == "initial"
    ok, listed = run_admin(router, {"op": "schemas"})
    assert ok and [row["current"] for row in listed] == [True]
    ok, error = run_admin(router, {"op": "updateschema", "number": 9, "dry_run": False, "force": False})
    assert not ok and error["code"] == "schema_error" and "no snapshot 9" in error["message"]
    for answer in (saved, planned, applied, listed, error):
        assert json.loads(json.dumps(answer)) == answer


def test_an_edited_latest_snapshot_does_not_block_saving(tmp_path):
    save_schema(school_v1, tmp_path)
    path = tmp_path / "schema_00001.sql"
    path.write_text(path.read_text().replace("VARCHAR(130)", "VARCHAR(131)"))
    result = save_schema(school_v1, tmp_path)
    assert result["created"] and result["number"] == 2
    assert [row.get("problem", "")[:16] for row in list_schemas(tmp_path)] == ["schema_00001.sql", ""]


def test_a_file_that_is_not_a_database_gives_a_schema_error(tmp_path):
    save_schema(school_v1, tmp_path / "schema")
    db = tmp_path / "db.sqlite3"
    db.write_bytes(b"this is not an SQLite database, just text" * 100)
    with pytest.raises(SchemaError, match="not a database"):
        apply_schema(1, tmp_path / "schema", db)
    with pytest.raises(SchemaError, match="not a database"):
        current_schema(db)


class Maker(Models.Model):
    name = Models.CharField(max_length=20)


class Gadget(Models.Model):
    label = Models.CharField(max_length=20)
    maker = Models.ForeignKey(to_table=Maker, on_delete=Models.CASCADE)


class Widget(Models.Model):
    """Gadget renamed, with two of its fields renamed: hints written by saveschema."""
    title = Models.CharField(max_length=20, renamed_from="label")
    producer = Models.ForeignKey(to_table=Maker, on_delete=Models.CASCADE, renamed_from="maker")

    class Meta:
        renamed_from = "Gadget"


def test_model_rename_hints_are_saved_and_move_the_data(tmp_path):
    schema_dir, db = tmp_path / "schema", tmp_path / "db.sqlite3"
    save_schema([Maker, Gadget], schema_dir)
    saved = save_schema([Maker, Widget], schema_dir)
    snapshot = read_snapshot(saved["path"])
    assert snapshot.table_renames == [("Widget", "Gadget")]
    assert snapshot.column_renames == [("Widget", "title", "label"), ("Widget", "producer_id", "maker_id")]
    apply_schema(1, schema_dir, db)
    conn = sqlite3.connect(db)
    conn.executescript("""INSERT INTO Maker (id, name) VALUES (1, 'acme');
                          INSERT INTO Gadget (id, label, maker_id) VALUES (7, 'rocket', 1);""")
    conn.close()
    result = apply_schema(2, schema_dir, db)
    assert not result["destructive"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id, title, producer_id FROM Widget").fetchall() == [(7, "rocket", 1)]
    conn.close()
