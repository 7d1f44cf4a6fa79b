"""The interactive console on a pseudo-terminal (pexpect): help, status, a typo, saveschema,
updateschema 2 while a client keeps sending requests, stop."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pexpect

from fluxon.connect import ConnectionHandler
from fluxon.errors import FluxonError
from support import pid_alive, wait_for
from test_tutorial_support import APP, app_env, copy_school_app, new_deployment, run_cli, wait_gone

PROMPT = "fluxon> "

# Snapshot 2 adds a table; the client's loop (my_courses) reads only tables snapshot 1 has.
_MODELS_V2 = '''

class Classroom(Models.Model):
    name = Models.CharField(max_length=50, unique=True)
    capacity = Models.IntegerField(default=30)
'''


class _ClientLoop(threading.Thread):
    """Sends my_courses in a loop until stopped; counts answers and failures."""

    def __init__(self, port: int, server_key: str) -> None:
        super().__init__(daemon=True)
        self.port, self.server_key = port, server_key
        self.answered = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with ConnectionHandler("127.0.0.1", self.port, server_key=self.server_key,
                               timeout_s=60.0) as conn:
            conn.send_request("signup", {"username": "loop_user", "password": "long enough",
                                         "email": "loop@school.example"})
            conn.send_request("login", {"username": "loop_user", "password": "long enough"})
            while not self.stopping.is_set():
                try:
                    conn.send_request("my_courses")
                    self.answered += 1
                except FluxonError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")


def _spawn_console(dep, folder: Path) -> pexpect.spawn:
    argv = dep.broker_argv("--console")
    env = {**os.environ, **app_env(folder), "PYTHONUNBUFFERED": "1", "TERM": "xterm"}
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(folder), env=env, encoding="utf-8",
                          timeout=30, dimensions=(50, 200))
    child.logfile_read = open(folder / "logs" / "console.log", "w")
    return child


def _run(child: pexpect.spawn, line: str, expect: str | list[str]) -> str:
    """Send one console line; wait for ``expect`` and the next prompt; the text in between."""
    child.sendline(line)
    child.expect(expect)
    seen = child.before + child.after
    child.expect_exact(PROMPT)
    return seen + child.before


def test_console_on_a_terminal(procs, tmp_path):
    copy_school_app(tmp_path)
    env = app_env(tmp_path)
    dep = new_deployment(procs, tmp_path)
    run_cli("schema", "save", APP, cwd=tmp_path, env=env)
    run_cli("schema", "apply", "1", APP, cwd=tmp_path, env=env)
    with open(tmp_path / "school" / "models.py", "a") as models:
        models.write(_MODELS_V2)

    child = _spawn_console(dep, tmp_path)
    try:
        child.expect("broker ready")
        child.expect_exact(PROMPT)
        workers = [dep.start_worker(name="worker1"), dep.start_worker(name="worker2")]

        text = _run(child, "help", "updateschema")
        assert "saveschema" in text and "stop" in text

        wait_for(lambda: dep.ctl_json("status")["workers"] == 2, 30, message="two workers")
        text = _run(child, "status", r"workers\s+2\s")
        assert "queue_depth" in text

        text = _run(child, "statsu", "No such command 'statsu'")
        assert pid_alive(child.pid)
        text = _run(child, "updateschema two", "is not a valid integer")

        text = _run(child, "saveschema", "schema_00002")
        assert (tmp_path / "var" / "schema" / "schema_00002.sql").exists()

        loop = _ClientLoop(dep.port, dep.server_key())
        loop.start()
        wait_for(lambda: loop.answered >= 20 or loop.failures, 30, message="client loop running")
        before = loop.answered
        text = _run(child, "updateschema 2", "Classroom")
        wait_for(lambda: loop.answered >= before + 20 or loop.failures, 30,
                 message="requests answered after the migration")
        loop.stopping.set()
        loop.join(30)
        assert loop.failures == []
        assert loop.answered > before

        text = _run(child, "schemas --json", '"file": "schema_00002.sql"')
        assert '"current": true' in text
        child.sendline("stop")
        child.expect(pexpect.EOF, timeout=20)
        child.close()
        assert child.exitstatus == 0
        history = (tmp_path / ".fluxon_history").read_text()
        assert "updateschema 2" in history and history.rstrip().endswith("stop")
        wait_gone(child.pid, *(w.pid for w in workers))  # `stop` tells the workers to exit too
        assert [w.wait(5) for w in workers] == [0, 0]
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)
        child.logfile_read.close()


def test_python_is_never_executed(procs, tmp_path):
    dep = new_deployment(procs, tmp_path, secure=False)
    child = _spawn_console(dep, tmp_path)
    try:
        child.expect_exact(PROMPT)
        for line in ("__import__('os').system('touch pwned')", "import os; os.system('touch pwned')",
                     "exec(\"open('pwned', 'w')\")"):
            _run(child, line, "Error")
        assert not (tmp_path / "pwned").exists()
        assert pid_alive(child.pid)
        child.sendline("stop")
        child.expect(pexpect.EOF, timeout=20)
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)
        child.logfile_read.close()
