"""`stop` takes the whole deployment down; `stop --keep-workers` stops the broker alone."""

from __future__ import annotations

import json

from support import pid_alive, wait_for
from test_tutorial_support import APP, copy_school_app, new_deployment, wait_gone


def test_keep_workers_then_stop_ends_separately_started_workers_and_pools(procs, tmp_path):
    copy_school_app(tmp_path)
    dep = new_deployment(procs, tmp_path)
    broker = dep.start_broker()
    single = dep.start_worker(name="single")
    pool = dep.start_worker(APP, "--processes", "2", name="pool")  # a supervisor and two children
    wait_for(lambda: dep.ctl_json("status")["workers"] == 3, 20, message="three workers registered")
    children = {row["pid"] for row in dep.ctl_json("workers")["workers"]} - {single.pid}
    assert len(children) == 2

    kept = json.loads(dep.ctl("stop", "--keep-workers", "--json").stdout)
    assert kept["stopping"] is True and kept["workers"].startswith("kept")
    assert broker.wait(15) == 0
    assert single.poll() is None and pool.poll() is None
    assert all(pid_alive(pid) for pid in children)

    # The workers were waiting for a broker: a new one on the same endpoints gets all three back.
    second = dep.start_broker()
    wait_for(lambda: dep.ctl_json("status")["workers"] == 3, 20, message="workers back on the new broker")

    assert json.loads(dep.ctl("stop", "--json").stdout)["workers"].startswith("told")
    assert second.wait(15) == 0
    assert single.wait(15) == 0 and pool.wait(15) == 0  # the pool's supervisor does not restart them
    wait_gone(*children)
