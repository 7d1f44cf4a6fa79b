"""docs/tutorial.md as a new user runs it: real processes through the real CLI, in a fresh folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT, pid_alive
from test_tutorial_support import APP, app_env, copy_school_app, new_deployment, run_cli, wait_gone


def test_the_tutorial_from_keygen_to_ctl_stop(procs, tmp_path):
    copy_school_app(tmp_path)
    env = app_env(tmp_path)
    dep = new_deployment(procs, tmp_path)                      # fluxon keygen --out deploy.key

    saved = run_cli("schema", "save", APP, cwd=tmp_path, env=env)
    assert (tmp_path / "var" / "schema" / "schema_00001.sql").exists(), saved.stdout + saved.stderr
    run_cli("schema", "apply", "1", APP, cwd=tmp_path, env=env)
    assert (tmp_path / "var" / "school.sqlite3").exists()

    broker = dep.start_broker()
    workers = [dep.start_worker(name="worker1"), dep.start_worker(name="worker2")]

    session = subprocess.run(
        [sys.executable, "-m", "school.client", "--port", str(dep.port),
         "--server-key", dep.server_key()],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    out = session.stdout
    assert session.returncode == 0, out + session.stderr
    assert "my_courses before login: refused as expected -> Unauthorized (unauthorized)" in out
    assert "login with a wrong password: refused as expected -> Unauthorized (unauthorized): " \
           "wrong username or password" in out
    assert "is enrolled in:" in out
    assert "Distributed Systems" in out.split("is enrolled in:")[1]
    assert "Linear Algebra" in out.split("is enrolled in:")[1]

    status = dep.ctl_json("status")
    assert status["workers"] == 2
    assert status["requests_total"] >= 14
    rows = dep.ctl_json("workers")["workers"]
    assert sorted(row["pid"] for row in rows) == sorted(w.pid for w in workers)
    assert sum(row["served"] for row in rows) >= 14
    sessions = dep.ctl_json("sessions")
    assert sessions["count"] >= 1
    assert 2 in [row["user_id"] for row in sessions["sessions"]]   # the student, still logged in
    table = dep.ctl("workers").stdout
    assert "SERVED" in table and str(workers[0].pid) in table
    student = next(row["sid"] for row in sessions["sessions"] if row["user_id"] == 2)
    assert "killed" in dep.ctl("sessions", "kill", student).stdout
    assert 2 not in [row["user_id"] for row in dep.ctl_json("sessions")["sessions"]]

    assert json.loads(dep.ctl("stop", "--json").stdout)["stopping"] is True
    # `stop` takes the deployment down: the broker tells its workers SHUTDOWN, they finish
    # their work and exit 0 by themselves, although they were started separately.
    assert broker.wait(15) == 0
    wait_gone(broker.pid, *(w.pid for w in workers))
    assert [w.wait(5) for w in workers] == [0, 0]
    assert not any(pid_alive(p.pid) for p in procs.procs)


def test_the_demo_runs_and_leaves_no_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "examples.school.demo"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    courses = result.stdout.split("is enrolled in:")[1]
    assert "Distributed Systems" in courses and "Linear Algebra" in courses
    folder = result.stdout.split("working in ", 1)[1].split()[0]
    assert _pids_mentioning(folder) == []


def _pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the demo's temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_the_tutorial_pages_own_files_serve_its_client_gh11(procs, tmp_path):
    """docs/tutorial.md's files and commands as written (its servers on free ports): the printed
    session matches the page's transcript."""
    from support import free_tcp_endpoint
    from test_docs import extract_blocks
    from test_tutorial_support import Deployment

    blocks = extract_blocks(REPO_ROOT / "docs" / "tutorial.md")
    for block in blocks:
        if block.kind == "file":
            (tmp_path / block.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / block.path).write_text(block.code)
    env = {"PYTHONPATH": str(tmp_path)}
    key_file = tmp_path / "school" / "fluxon.key"
    run_cli("keygen", "--out", str(key_file), cwd=tmp_path)
    run_cli("schema", "save", APP, cwd=tmp_path, env=env)
    run_cli("schema", "apply", "1", APP, cwd=tmp_path, env=env)
    dep = Deployment(procs, tmp_path, key_file, free_tcp_endpoint(), free_tcp_endpoint(), free_tcp_endpoint())
    dep.start_broker()
    dep.start_worker(name="worker1")
    dep.start_worker(name="worker2")
    (tmp_path / "school" / "broker.pub").write_text(dep.server_key())
    session = subprocess.run([sys.executable, "-m", "school.client", "--port", str(dep.port),
                              "--server-key-file", "school/broker.pub"],
                             cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert session.returncode == 0, session.stdout + session.stderr
    transcript = next(b.code for b in blocks if b.kind == "text" and "refused as expected" in b.code)
    assert session.stdout.splitlines() == transcript.splitlines()
