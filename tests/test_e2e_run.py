"""`fluxon run` and the seed's run_server: one command, clean shutdown, no orphan processes."""

from __future__ import annotations

import re
import signal
import socket
import sys
import textwrap

import pytest

from fluxon.broker.control import send_control_command
from fluxon.client import ConnectionHandler
from fluxon.keys import derive_keys, generate_private_key
from support import REPO_ROOT, fluxon_argv, free_port, pid_alive, wait_for


def worker_pids(log: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"started worker process \d+ \(pid (\d+)\)", log)}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_fluxon_run_serves_and_leaves_no_orphans(procs, sig):
    port, backend, control = free_port(), free_port(), free_port()
    argv = fluxon_argv("run", "tests.apps.echo_app:router", "--workers", "2", "--port", str(port),
                       "--backend-port", str(backend), "--control-port", str(control),
                       "--insecure", "--heartbeat-interval-s", "0.1")
    server = procs.start(argv, cwd=REPO_ROOT, name="run")
    procs.wait_log(server, "broker ready")
    wait_for(lambda: procs.log(server).count("worker ready") == 2, 15, message="two workers ready")
    children = worker_pids(procs.log(server))
    assert len(children) == 2
    with ConnectionHandler("127.0.0.1", port, timeout_s=5.0) as client:
        assert client.send_request("pid") in children
    workers = send_control_command(f"tcp://127.0.0.1:{control}", "workers")
    assert {row["app"] for row in workers["workers"]} == {"tests.apps.echo_app:router"}
    server.send_signal(sig)
    code = server.wait(20)
    assert code == (0 if sig == signal.SIGINT else -signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(pid) for pid in children), 10, message="workers gone")


def test_run_server_seed_api_with_router_in_main_and_secure_mode(procs, tmp_path):
    private_key = generate_private_key()
    port, backend, control = free_port(), free_port(), free_port()
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(f"""
        import os
        from fluxon.endpoint import AsyncServer, run_server
        from fluxon.routing import Router

        def hello(request):
            return ("hello", request.payload, os.getpid())

        router = Router(mapping={{"hello": hello}}, private_key={private_key!r})
        raise SystemExit(run_server(AsyncServer(port={port}, secure=True, router=router, workers=1,
                                                backend_port={backend}, control_port={control},
                                                heartbeat_interval_s=0.1)))
    """))
    server = procs.start([sys.executable, str(script)], cwd=tmp_path, name="server")
    procs.wait_log(server, "worker ready")
    (child,) = worker_pids(procs.log(server))
    server_key = derive_keys(private_key).broker.public
    with ConnectionHandler("127.0.0.1", port, server_key=server_key, timeout_s=5.0) as client:
        assert client.send_request("hello", 1) == ("hello", 1, child)
    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert not pid_alive(child)
    assert private_key not in procs.log(server)


def test_fluxon_run_console_reads_commands_and_stop_ends_everything(procs, tmp_path):
    port, backend, control = free_port(), free_port(), free_port()
    commands = tmp_path / "commands.txt"
    commands.write_text("status\nbogus-command\nstop\n")
    argv = " ".join(fluxon_argv("run", "tests.apps.echo_app:router", "--workers", "1", "--port", str(port),
                                "--backend-port", str(backend), "--control-port", str(control),
                                "--insecure", "--heartbeat-interval-s", "0.1", "--console"))
    shell = procs.start(["sh", "-c", f"exec {argv} < {commands}"], cwd=REPO_ROOT, name="run-console")
    assert shell.wait(30) == 0
    log = procs.log(shell)
    assert "uptime" in log and "No such command" in log
    (child,) = worker_pids(log)
    assert not pid_alive(child)


def test_fluxon_run_exits_non_zero_when_its_broker_fails_gh10(procs):
    """A broker that cannot start (its port is taken) stops `fluxon run` with exit code 1, not 0."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = fluxon_argv("run", "tests.apps.echo_app:router", "--workers", "1", "--port", str(port),
                           "--backend-port", str(free_port()), "--control-port", str(free_port()), "--insecure")
        server = procs.start(argv, cwd=REPO_ROOT, name="run")
        assert server.wait(30) == 1
    assert "cannot bind the broker's frontend socket" in procs.log(server)
    children = worker_pids(procs.log(server))
    wait_for(lambda: not any(pid_alive(pid) for pid in children), 10, message="workers gone")
