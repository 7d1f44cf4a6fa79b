"""The shared process helpers really kill what they start."""

import sys

from support import pid_alive, wait_for


def test_procs_fixture_kills_started_process_by_pid(tmp_path):
    from support import process_group
    with process_group(tmp_path) as group:
        proc = group.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
        group.wait_log(proc, "up")
        pid = proc.pid
        assert pid_alive(pid)
    wait_for(lambda: not pid_alive(pid), 5, message="process killed")


def test_free_ports_stay_reserved_until_a_broker_binds_them_gh11():
    """A port from free_port() is given to no other bind(0) and refused to a plain bind,
    yet the broker's ZeroMQ socket binds it (issue 11: "Address already in use" on a busy machine)."""
    import errno
    import socket

    import pytest
    import zmq

    from support import free_port

    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50
    for _ in range(200):                          # what another process's "free port" probe does
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            assert probe.getsockname()[1] not in ports
    port = ports.pop()
    with socket.socket() as intruder, pytest.raises(OSError) as refused:
        intruder.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE
    context = zmq.Context()
    try:
        router = context.socket(zmq.ROUTER)
        router.bind(f"tcp://127.0.0.1:{port}")
        dealer = context.socket(zmq.DEALER)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"ping")
        assert router.poll(5000) and router.recv_multipart()[1] == b"ping"
    finally:
        context.destroy(0)
