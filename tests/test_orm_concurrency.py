"""Four processes write one SQLite file at once, 500 transactions each.

Every row must arrive, no lost update on a shared counter (read-modify-write inside
``atomic()``), and no "database is locked" may reach the caller.
"""

from __future__ import annotations

import sys
import textwrap

from support import wait_for

from fluxon.database import models as m
from fluxon.database.manipulation import SqliteDatabase

WRITERS = 4
TRANSACTIONS = 500

CHILD = textwrap.dedent("""
    import os, sys, time
    from fluxon.database import models as m
    from fluxon.database.manipulation import SqliteDatabase

    class Counter(m.Model):
        value = m.IntegerField(default=0)

    class Entry(m.Model):
        writer = m.IntegerField()
        seq = m.IntegerField()

        class Meta:
            unique_together = (("writer", "seq"),)

    path, writer, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    db = SqliteDatabase(path, models=[Counter, Entry])
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    for seq in range(count):
        if seq % 2:
            with db.atomic():                       # read-modify-write: needs the write lock up front
                current = Counter.get(Counter.id == 1).value
                Counter.update({Counter.value: current + 1}, Counter.id == 1)
                Entry.insert({"writer": writer, "seq": seq})
        else:                                        # single writes, each its own transaction
            Entry.insert({Entry.writer: writer, Entry.seq: seq})
            Counter.update({Counter.value: Counter.value + 1}, Counter.id == 1)
    print("done", writer, flush=True)
""")


class Counter(m.Model):
    value = m.IntegerField(default=0)

    class Meta:
        table_name = "Counter"


class Entry(m.Model):
    writer = m.IntegerField()
    seq = m.IntegerField()

    class Meta:
        unique_together = (("writer", "seq"),)


def test_four_processes_write_concurrently_without_locked_errors(tmp_path, procs):
    path = tmp_path / "shared.sqlite3"
    db = SqliteDatabase(path, models=[Counter, Entry])
    db.create_tables()
    Counter.insert({})
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    go = tmp_path / "go"
    children = [procs.start([sys.executable, str(script), str(path), str(w), str(TRANSACTIONS),
                             str(go)], name=f"writer{w}") for w in range(WRITERS)]
    go.write_text("go")
    wait_for(lambda: all(c.poll() is not None for c in children), timeout_s=60,
             message="the writer processes to finish")
    for child in children:
        log = procs.log(child)
        assert child.returncode == 0, log[-3000:]
        assert "locked" not in log and "done" in log
    assert Entry.count() == WRITERS * TRANSACTIONS
    pairs = {(e.writer, e.seq) for e in Entry.check()}
    assert pairs == {(w, s) for w in range(WRITERS) for s in range(TRANSACTIONS)}
    assert Counter.get(Counter.id == 1).value == WRITERS * TRANSACTIONS
    db.close_all()
