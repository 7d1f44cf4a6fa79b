"""The command line a new user meets first (issue 11): -h everywhere, --version, help without a key,
help text for every option, one set of log-level names, and a suggestion for a mistyped command."""

from __future__ import annotations

import subprocess

import click
import pytest
from click.testing import CliRunner

from fluxon import __version__
from fluxon.cli import main
from fluxon.console import console_group
from fluxon.keys import load_private_key
from fluxon.types import LOG_LEVELS
from support import fluxon_argv


def _commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, path + (name,))


ALL = [pytest.param(path, command, id=" ".join(path) or "fluxon") for path, command in _commands(main)]


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    monkeypatch.delenv("FLUXON_PRIVATE_KEY", raising=False)
    return CliRunner()


@pytest.mark.parametrize("path, command", ALL)
def test_every_command_has_help_for_every_option_and_h_works_without_a_key_gh11(runner, path, command):
    for flag in ("-h", "--help"):
        result = runner.invoke(main, [*path, flag])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Usage:") and "Error:" not in result.output
    undocumented = [param.opts for param in command.params if isinstance(param, click.Option) and not param.help]
    assert undocumented == []


def test_version_gh11(runner) -> None:
    assert runner.invoke(main, ["--version"]).output.strip() == f"fluxon, version {__version__}"
    result = subprocess.run(fluxon_argv("-V"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and __version__ in result.stdout


def test_log_level_names_are_the_same_everywhere_gh11() -> None:
    main_choices = next(p for p in main.params if p.name == "log_level").type.choices
    console_choices = next(p for p in console_group.commands["log-level"].params if p.name == "level").type.choices
    assert tuple(main_choices) == tuple(console_choices) == LOG_LEVELS


@pytest.mark.parametrize("argv, nearest", [
    (["ctl", "--insecure", "bogus"], "Did you mean"),
    (["ctl", "--insecure", "stauts"], "Did you mean 'status'?"),
    (["ctl", "--insecure", "schema"], "Did you mean 'schemas'?"),
    (["brokr"], "Did you mean 'broker'?"),
])
def test_a_mistyped_command_gets_the_nearest_one_gh11(runner, argv, nearest) -> None:
    result = runner.invoke(main, argv)
    assert result.exit_code == 2
    assert nearest in result.output and "commands:" in result.output


def test_keygen_out_creates_missing_folders_gh11(runner, tmp_path) -> None:
    target = tmp_path / "school" / "keys" / "fluxon.key"
    result = runner.invoke(main, ["keygen", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert load_private_key(target) and target.stat().st_mode & 0o777 == 0o600
    assert "broker public key: '" in result.output      # quoted: Z85 holds $, ! and #
