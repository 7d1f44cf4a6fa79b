"""The console's click commands through `fluxon ctl` (CliRunner) against a real broker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fluxon.cli import main
from fluxon.console import Console, SocketTransport, execute_line
from fluxon.keys import derive_keys, load_private_key
from support import pid_alive, process_group
from test_tutorial_support import Deployment, new_deployment, run_cli, wait_gone


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    """One secure broker (no workers) shared by the read-mostly tests of this module."""
    folder = tmp_path_factory.mktemp("console")
    (folder / "logs").mkdir()
    with process_group(folder / "logs") as group:
        dep = new_deployment(group, folder)
        dep.start_broker()
        yield dep


def ctl(dep: Deployment, *args: str, key_file: Path | None = None):
    return CliRunner().invoke(main, ["ctl", "--control", dep.control, "--timeout-s", "3",
                                     "--key-file", str(key_file or dep.key_file), *args])


def test_status_as_json_and_as_a_table(deployment):
    result = ctl(deployment, "status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["workers"] == 0
    assert "queue_depth" in status and "sessions" in status
    table = ctl(deployment, "status")
    assert table.exit_code == 0, table.output
    assert "queue_depth" in table.output and "{" not in table.output


def test_group_level_json_flag_applies_to_every_command(deployment):
    result = CliRunner().invoke(main, ["ctl", "--control", deployment.control, "--json",
                                       "--key-file", str(deployment.key_file), "workers"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    rows = answer["workers"] if isinstance(answer, dict) else answer
    assert rows == []


def test_sessions_lists_and_kill_of_unknown_session_is_an_error(deployment):
    listing = ctl(deployment, "sessions", "--json")
    assert listing.exit_code == 0, listing.output
    assert json.loads(listing.output)["count"] == 0
    killed = ctl(deployment, "sessions", "kill", "no-such-session")
    assert killed.exit_code == 1
    assert "no-such-session" in killed.output


def test_drain_and_resume_show_in_status(deployment):
    assert ctl(deployment, "drain").exit_code == 0
    assert json.loads(ctl(deployment, "status", "--json").output)["draining"] is True
    assert ctl(deployment, "resume").exit_code == 0
    assert json.loads(ctl(deployment, "status", "--json").output)["draining"] is False


@pytest.mark.parametrize("args, exit_code, text", [
    (["debug", "on"], 0, ""),
    (["debug", "off"], 0, ""),
    (["log-level", "debug"], 0, ""),
    (["log-level", "info"], 0, ""),
    (["debug", "maybe"], 2, "'maybe' is not one of"),
    (["log-level", "LOUD"], 2, "'LOUD' is not one of"),
    (["statsu"], 2, "No such command 'statsu'"),
    (["updateschema"], 2, "Missing argument 'NUMBER'"),
    (["updateschema", "two"], 2, "'two' is not a valid integer"),
])
def test_arguments_are_checked_before_anything_is_sent(deployment, args, exit_code, text):
    result = ctl(deployment, *args)
    assert result.exit_code == exit_code, result.output
    assert text in result.output


def test_help_lists_every_command_without_a_key(tmp_path):
    result = CliRunner().invoke(main, ["ctl", "--control", "tcp://127.0.0.1:9", "help"])
    assert result.exit_code == 0, result.output
    for command in ("status", "workers", "sessions", "saveschema", "updateschema", "schemas",
                    "drain", "resume", "debug", "log-level", "stop", "help"):
        assert command in result.output
    one = CliRunner().invoke(main, ["ctl", "help", "updateschema"])
    assert "--dry-run" in one.output and "--force" in one.output


def test_ctl_with_a_wrong_key_is_refused_and_the_broker_keeps_serving(deployment, tmp_path):
    wrong_key = tmp_path / "other.key"
    run_cli("keygen", "--out", str(wrong_key), cwd=tmp_path)
    refused = CliRunner().invoke(main, ["ctl", "--control", deployment.control, "--timeout-s", "20",
                                        "--key-file", str(wrong_key), "status"])
    assert refused.exit_code == 1
    assert "the handshake with the broker's control socket" in refused.output
    assert "check that --key-file is this deployment's private key" in refused.output
    plain = CliRunner().invoke(main, ["ctl", "--control", deployment.control, "--timeout-s", "20",
                                      "--insecure", "status"])
    assert plain.exit_code == 1 and "the broker requires CURVE" in plain.output
    assert pid_alive(deployment.broker.pid)
    assert ctl(deployment, "status", "--json").exit_code == 0


def test_ctl_without_any_key_is_a_usage_error(deployment, monkeypatch):
    monkeypatch.delenv("FLUXON_PRIVATE_KEY", raising=False)
    result = CliRunner().invoke(main, ["ctl", "--control", deployment.control, "status"])
    assert result.exit_code == 2
    assert "no private key" in result.output


def test_console_lines_survive_typos_and_stop_ends_the_broker(procs, tmp_path, capsys):
    dep = new_deployment(procs, tmp_path)
    broker = dep.start_broker()
    keys = derive_keys(load_private_key(str(dep.key_file)))
    session = Console(SocketTransport(dep.control, keys=keys, timeout_s=5))
    for line in ("statsu", "status --bogus", "updateschema 'unclosed", "", "help", "status"):
        assert execute_line(session, line) is True
    assert pid_alive(broker.pid)
    out = capsys.readouterr().out
    assert "No such command 'statsu'" in out and "No closing quotation" in out
    assert "uptime" in out
    assert execute_line(session, "stop") is False
    wait_gone(broker.pid)
    assert broker.wait(5) == 0


@pytest.mark.parametrize("words, prefix, expected", [
    ([], "st", ["status", "stop"]),
    ([], "update", ["updateschema"]),
    (["sessions"], "", ["--json", "kill"]),
    (["debug"], "o", ["off", "on"]),
    (["log-level"], "W", ["WARNING"]),
    (["updateschema"], "--d", ["--dry-run"]),
])
def test_tab_completion_offers_commands_choices_and_options(words, prefix, expected):
    from fluxon.console import _Completer, console_group

    assert _Completer(console_group).candidates(words, prefix) == sorted(expected)
