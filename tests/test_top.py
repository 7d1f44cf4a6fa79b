"""Issue 17: `fluxon top` in a pseudo-terminal, and its percentile arithmetic."""

from __future__ import annotations

import re
import sys
import threading

import pexpect
import pytest

from fluxon.keys import write_private_key
from fluxon.testing import TestServer
from fluxon.top import quantile_s, render_top
from support import REPO_ROOT


def test_top_in_a_pty_shows_a_routes_rate_and_exits_on_q(tmp_path):
    sys.path.insert(0, str(REPO_ROOT))
    from tests.apps.echo_app import router

    with TestServer(router) as server:
        key_file = tmp_path / "deploy.key"
        write_private_key(key_file, server.private_key)
        stop = threading.Event()

        def send() -> None:
            client = server.client()
            while not stop.is_set():
                client.send_request("echo", 1)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        top = pexpect.spawn(sys.executable, ["-m", "fluxon.cli", "top", "--control", server.control_endpoint,
                                             "--key-file", str(key_file), "--interval-s", "0.3"],
                            cwd=str(REPO_ROOT), timeout=30, encoding="utf-8", dimensions=(40, 120))
        try:
            top.expect("ROUTE")
            # A frame after the first has a rate: "echo  <requests/s>  <p50>  <p99> ..."
            top.expect(re.compile(r"echo\s+(\d+\.\d)\s+(\d+\.\d+)\s+(\d+\.\d+)"))
            while float(top.match.group(1)) == 0.0:
                top.expect(re.compile(r"echo\s+(\d+\.\d)\s+"))
            assert float(top.match.group(1)) > 0
            top.expect("WORKER")
            top.send("q")
            top.expect(pexpect.EOF)
            top.close()
            assert top.exitstatus == 0
        finally:
            stop.set()
            if top.isalive():
                top.terminate(force=True)
        sender.join(10)


def test_top_console_command_prints_frames_without_a_terminal(tmp_path):
    sys.path.insert(0, str(REPO_ROOT))
    from tests.apps.echo_app import router
    from fluxon.console import Console, SocketTransport, execute_line

    with TestServer(router) as server:
        server.client().send_request("echo", 1)
        out: list[str] = []
        console = Console(SocketTransport(server.control_endpoint, keys=server.keys), echo=out.append)
        assert execute_line(console, "top --frames 2 --interval-s 0.1")
        assert len([frame for frame in out if "ROUTE" in frame]) == 2 and "echo" in out[-1]
        execute_line(console, "metrics")
        assert 'fluxon_requests_total{outcome="ok",route="echo"} 1.0' in out[-1]


@pytest.mark.parametrize("buckets, q, expected", [
    ([0, 0, 0], 0.5, None),
    ([10, 0, 0], 0.5, 0.0005),           # half of the first bucket [0, 1 ms]
    ([0, 10, 0], 0.99, 0.00199),
    ([0, 0, 4], 0.5, 0.002),             # +Inf: the histogram says only "above the last bound"
])
def test_quantile_interpolates_within_a_bucket(buckets, q, expected):
    result = quantile_s(buckets, [0.001, 0.002], q)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_render_top_first_frame_has_no_rate():
    answer = {"status": {"uptime_s": 3, "queue_depth": 0, "sessions": 1, "requests_total": 2},
              "workers": [{"id": "ab" * 8, "host": "h", "pid": 1, "credit": 4, "in_flight": 1, "served": 2}],
              "snapshot": {"buckets_s": [0.001], "routes": {"echo": {"outcomes": {"ok": 2}, "buckets": [2, 0],
                                                                       "sum_s": 0.001, "count": 2}}}}
    frame = render_top(answer, None, 0.0)
    assert re.search(r"echo\s+-\s+0\.50\s+0\.99\s+2\s+0", frame), frame
    assert "credit in use 1/4" in frame


def test_shell_completion_of_commands_and_ctl_subcommands():
    from click.testing import CliRunner

    from fluxon.cli import main

    def complete(words: str) -> str:
        env = {"_FLUXON_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        return CliRunner().invoke(main, [], prog_name="fluxon", env=env).output
    assert "plain,top" in complete("fluxon to") and "plain,ctl" in complete("fluxon ct")
    assert "plain,metrics" in complete("fluxon ctl met")
    assert "plain,--reload" in complete("fluxon run --rel")
