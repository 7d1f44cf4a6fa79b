"""The broker console: one click command group behind two front ends.

* ``fluxon ctl [--control ENDPOINT] [--key-file F] COMMAND ...`` sends one command to a
  running broker's CURVE-secured control socket (admin keypair derived from the private
  key) and prints the answer.
* :func:`run_console` reads lines from a terminal (or any stream) inside ``fluxon broker``
  / ``fluxon run``, splits each with :mod:`shlex` and runs it through the same group with
  ``standalone_mode=False``: a typo prints click's usage error and the broker keeps running.
  No line is ever executed as Python.

Every command talks to the broker through a :class:`ControlTransport` handed down with
``make_pass_decorator``, so both front ends run the very same code. Answers print as
readable tables, or as JSON with ``--json`` (for scripts)::

    $ fluxon ctl --key-file deploy.key status
    uptime_s      12s
    workers       2
    ...
    $ fluxon ctl --key-file deploy.key workers --json
    [{"id": "...", "pid": 4242, ...}]
"""

from __future__ import annotations

import atexit
import difflib
import json
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import click

from fluxon.broker.config import BrokerConfig
from fluxon.broker.control import send_control_command
from fluxon.console_render import render_rows, render_sessions, render_status, render_value
from fluxon.errors import ConfigurationError, ConnectionError as FluxonConnectionError, FluxonError, Timeout
from fluxon.keys import derive_keys, load_private_key
from fluxon.types import LOG_LEVELS

__all__ = [
    "DEFAULT_CONTROL_ENDPOINT",
    "ControlTransport",
    "SocketTransport",
    "Console",
    "console_group",
    "ctl",
    "run_console",
    "run_console_thread",
    "attach_console",
    "stdin_is_interactive",
    "execute_line",
    "SuggestingGroup",
]

logger = logging.getLogger("fluxon.console")

DEFAULT_CONTROL_ENDPOINT: str = BrokerConfig.control  # the broker's own default
PROMPT = "fluxon> "
#: How much longer than an admin command's deadline the console waits for the broker's answer.
_ADMIN_ANSWER_MARGIN_S = 2.0
#: `fluxon ctl`'s waits when --timeout-s is not given: a command, and an admin operation.
_COMMAND_TIMEOUT_S = 10.0
_ADMIN_TIMEOUT_S = 60.0


class ControlTransport(Protocol):
    """Carries one control command to a broker and returns its answer as plain data."""

    def call(self, command: str, args: Mapping[str, Any] | None = None) -> Any:
        """Send ``command`` with ``args``; return the result or raise a :class:`FluxonError`."""

    def describe(self) -> str:
        """Where the commands go, for error messages (e.g. the control endpoint)."""


class SocketTransport:
    """The broker's control socket (DEALER, CURVE with the admin keypair when ``keys`` is given)."""

    def __init__(self, endpoint: str = DEFAULT_CONTROL_ENDPOINT, *, keys: Any = None,
                 timeout_s: float = 5.0, admin_timeout_s: float = 60.0,
                 load_keys: Callable[[], Any] | None = None) -> None:
        self.endpoint = endpoint
        self.keys = keys
        # Keys are loaded on the first call, so `--help` of any command needs none.
        self._load_keys = load_keys
        self.timeout_s = timeout_s
        # Schema jobs wait for in-flight requests and run a migration: the broker is given the
        # same deadline (the command's "timeout_s") and answers when it passes, so the answer
        # (a Timeout that says what it waited for) arrives before this client gives up.
        self.admin_timeout_s = admin_timeout_s

    def call(self, command: str, args: Mapping[str, Any] | None = None) -> Any:
        if self._load_keys is not None:
            self.keys, self._load_keys = self._load_keys(), None
        args = dict(args or {})
        timeout_s = self.timeout_s
        if command == "admin":
            args.setdefault("timeout_s", self.admin_timeout_s)
            timeout_s = self.admin_timeout_s + _ADMIN_ANSWER_MARGIN_S
        return send_control_command(self.endpoint, command, args, keys=self.keys, timeout_s=timeout_s)

    def describe(self) -> str:
        return f"the broker's control socket at {self.endpoint}"

    def __repr__(self) -> str:  # never shows key material
        mode = "curve" if self.keys is not None else "plain"
        return f"SocketTransport({self.endpoint!r}, {mode}, timeout_s={self.timeout_s})"


@dataclass
class Console:
    """The state every console command shares: where commands go and how answers print."""

    transport: ControlTransport
    json_output: bool = False
    stopped: bool = False
    echo: Callable[[str], None] = field(default=click.echo)

    def call(self, command: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run one control command; a broker-side failure becomes a :class:`click.ClickException`."""
        try:
            return self.transport.call(command, args)
        except FluxonError as exc:
            raise click.ClickException(_describe_failure(exc, self.transport)) from exc

    def show(self, data: Any, render: Callable[[Any], str] | None = None, *,
             json_output: bool = False) -> None:
        """Print ``data`` as JSON (``--json``) or through ``render`` (a readable table)."""
        if json_output or self.json_output:
            self.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            self.echo((render or render_value)(data))


pass_console = click.make_pass_decorator(Console)


def _describe_failure(exc: FluxonError, transport: ControlTransport) -> str:
    if isinstance(exc, FluxonConnectionError) and exc.message.startswith("the handshake"):
        return exc.message  # it names the key to check already
    if isinstance(exc, (Timeout, FluxonConnectionError)):
        return (f"no answer from {transport.describe()}: {exc.message} "
                "(is the broker running, and is this the deployment's private key?)")
    text = f"{exc.code}: {exc.message}"
    if exc.remote_traceback:
        text += "\n" + exc.remote_traceback
    return text


# --------------------------------------------------------------------------- the commands

json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")


class SuggestingGroup(click.Group):
    """A click group whose unknown-command error names the nearest command (or lists them all)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            known = self.list_commands(ctx)
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
            hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
            raise click.UsageError(f"No such command {name!r}.{hint} (commands: {', '.join(known)})", ctx)
        return super().resolve_command(ctx, args)


@click.group("console", cls=SuggestingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def console_group() -> None:
    """Broker console commands (type `help COMMAND` for one command's options)."""


@console_group.command()
@json_option
@pass_console
def status(console: Console, as_json: bool) -> None:
    """Uptime, workers, queue depth, requests/s, error counts, sessions."""
    console.show(console.call("status"), render_status, json_output=as_json)


@console_group.command()
@json_option
@pass_console
def workers(console: Console, as_json: bool) -> None:
    """Each worker: id, host/pid, credit, in-flight, served, last heartbeat."""
    console.show(console.call("workers"), render_rows("workers"), json_output=as_json)


@console_group.group(invoke_without_command=True)
@json_option
@click.pass_context
def sessions(context: click.Context, as_json: bool) -> None:
    """List the sessions (count, user ids); `sessions kill ID` ends one."""
    if context.invoked_subcommand is None:
        console = context.find_object(Console)
        console.show(console.call("sessions"), render_sessions, json_output=as_json)


@sessions.command("kill")
@click.argument("session_id")
@json_option
@pass_console
def sessions_kill(console: Console, session_id: str, as_json: bool) -> None:
    """End the session SESSION_ID (its client must start a new one)."""
    answer = console.call("sessions-kill", {"sid": session_id})
    if not answer["killed"]:
        raise click.ClickException(f"no session {session_id!r}")
    if as_json or console.json_output:
        console.show(answer, json_output=True)
    else:
        console.echo(f"session {session_id} killed")


@console_group.command()
@json_option
@pass_console
def saveschema(console: Console, as_json: bool) -> None:
    """Snapshot the application's models as the next schema_NNNNN.sql (done by a worker)."""
    console.show(console.call("admin", {"op": "saveschema"}), json_output=as_json)


@console_group.command()
@click.argument("number", type=click.IntRange(min=1))
@click.option("--dry-run", is_flag=True, help="Only show the migration plan.")
@click.option("--force", is_flag=True, help="Allow steps that lose data (dropped tables or columns).")
@json_option
@pass_console
def updateschema(console: Console, number: int, dry_run: bool, force: bool, as_json: bool) -> None:
    """Migrate the database to snapshot NUMBER, keeping its data.

    Dispatch pauses, in-flight requests finish, one worker migrates, then dispatch
    resumes; requests that arrive meanwhile wait in the queue.
    """
    args = {"op": "updateschema", "number": number, "dry_run": dry_run, "force": force}
    console.show(console.call("admin", args), json_output=as_json)


@console_group.command()
@json_option
@pass_console
def schemas(console: Console, as_json: bool) -> None:
    """The saved schema snapshots and which one the database is on."""
    console.show(console.call("admin", {"op": "schemas"}), render_rows("schemas"),
                 json_output=as_json)


@console_group.command()
@json_option
@pass_console
def drain(console: Console, as_json: bool) -> None:
    """Stop dispatching requests to workers (they wait in the queue)."""
    console.show(console.call("drain"), json_output=as_json)


@console_group.command()
@json_option
@pass_console
def resume(console: Console, as_json: bool) -> None:
    """Dispatch queued and new requests again."""
    console.show(console.call("resume"), json_output=as_json)


@console_group.command()
@click.argument("state", type=click.Choice(["on", "off"], case_sensitive=False))
@json_option
@pass_console
def debug(console: Console, state: str, as_json: bool) -> None:
    """Debug mode on or off: tracebacks to clients and verbose logs."""
    console.show(console.call("debug", {"on": state.lower() == "on"}), json_output=as_json)


@console_group.command("log-level")
@click.argument("level", type=click.Choice(LOG_LEVELS, case_sensitive=False))
@json_option
@pass_console
def log_level(console: Console, level: str, as_json: bool) -> None:
    """Set the broker's fluxon.* log level."""
    console.show(console.call("log-level", {"level": level.upper()}), json_output=as_json)


@console_group.command()
@click.option("--keep-workers", is_flag=True,
              help="Leave the workers running: they reconnect to the next broker (restart the broker alone).")
@json_option
@pass_console
def stop(console: Console, keep_workers: bool, as_json: bool) -> None:
    """Stop gracefully: drain, let workers finish and exit (unless --keep-workers), persist sessions."""
    console.show(console.call("stop", {"keep_workers": keep_workers}), json_output=as_json)
    console.stopped = True


@console_group.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_command(context: click.Context, command: str | None) -> None:
    """Show the commands, or one command's options."""
    parent = context.parent or context
    group = parent.command if isinstance(parent.command, click.Group) else console_group
    shared = context.find_object(Console)
    echo = shared.echo if shared is not None else click.echo
    if command is None:
        formatter = parent.make_formatter()
        formatter.write_text("Type `help COMMAND` for one command's arguments and options.")
        group.format_commands(parent, formatter)
        echo(formatter.getvalue().rstrip())
        return
    target = group.get_command(parent, command)
    if target is None:
        raise click.UsageError(f"no such command {command!r}; type `help` for the list", parent)
    with click.Context(target, info_name=command, parent=parent) as sub:
        echo(target.get_help(sub))


# --------------------------------------------------------------------------- fluxon ctl

@click.group("ctl", cls=SuggestingGroup, commands=console_group.commands, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--control", "endpoint", default=DEFAULT_CONTROL_ENDPOINT, show_default=True,
              envvar="FLUXON_CONTROL", help="The broker's control endpoint.")
@click.option("--key-file", type=click.Path(dir_okay=False),
              help="The deployment's private key file (default: FLUXON_PRIVATE_KEY).")
@click.option("--insecure", is_flag=True,
              help="Plain control socket (a broker started with --insecure), no CURVE.")
@click.option("--timeout-s", type=click.FloatRange(min=0.1), default=None,
              help="Seconds to wait for the broker's answer (default 10; 60 for saveschema, updateschema and "
                   "schemas, for which it is also the broker's deadline: raise it for a long migration).")
@click.option("--json", "as_json", is_flag=True, help="Print every answer as JSON.")
@click.pass_context
def ctl(context: click.Context, endpoint: str, key_file: str | None, insecure: bool,
        timeout_s: float | None, as_json: bool) -> None:
    """Send one console COMMAND to a running broker and print its answer.

    Without a COMMAND, open the interactive console on that broker (the same commands,
    one per line, until `stop` or Ctrl-D).
    """
    transport = SocketTransport(endpoint, timeout_s=timeout_s or _COMMAND_TIMEOUT_S,
                                admin_timeout_s=timeout_s or _ADMIN_TIMEOUT_S,
                                load_keys=None if insecure else lambda: _load_admin_keys(key_file))
    context.obj = Console(transport, json_output=as_json)
    if context.invoked_subcommand is None:
        run_console(transport, banner=f"fluxon console on {endpoint} (type `help`; Ctrl-D leaves)",
                    leave_message="console closed")


def _load_admin_keys(key_file: str | None) -> Any:
    """The deployment keys (the admin keypair signs us in), from --key-file or the environment."""
    try:
        private_key = load_private_key(key_file)  # validated: derive_keys cannot fail on it
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    if private_key is None:
        raise click.UsageError("no private key: give --key-file F or set FLUXON_PRIVATE_KEY "
                               "(or --insecure for a broker started with --insecure)")
    return derive_keys(private_key)


# --------------------------------------------------------------------------- interactive console

def execute_line(console: Console, line: str) -> bool:
    """Run one console line; print any error. Returns False once the broker was told to stop.

    The line is split with :mod:`shlex` and handed to the click group: nothing is ever
    evaluated as Python, and no error (a typo, a bad argument, a broker failure) escapes.
    """
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        console.echo(f"Error: {exc}")
        return True
    if not argv:
        return True
    try:
        console_group.main(argv, prog_name="", standalone_mode=False, obj=console)
    except click.exceptions.Exit:
        pass  # --help printed its text
    except click.exceptions.Abort:
        console.echo("Aborted.")
    except click.ClickException as exc:
        console.echo(_format_click_error(exc))
    except Exception:  # a bug in a command must not take the broker down with it
        logger.exception("console command %r failed", argv[0])
        console.echo(f"Error: the command {argv[0]!r} failed unexpectedly (see the log)")
    return not console.stopped


def _format_click_error(exc: click.ClickException) -> str:
    """click's own layout (usage, hint, error), minus the usage line of the nameless group."""
    message = f"Error: {exc.format_message()}"
    if not isinstance(exc, click.UsageError) or exc.ctx is None:
        return message
    path = exc.ctx.command_path.strip()
    if not path:
        return f"{message}\nType `help` for the commands."
    return f"{exc.ctx.get_usage()}\nTry `help {path}`.\n\n{message}"


def run_console(transport: ControlTransport, *, stdin: TextIO | None = None,
                prompt: str = PROMPT, history_file: str | Path | None = None,
                banner: str | None = None,
                leave_message: str = "console closed (the broker keeps running)") -> None:
    """Read console lines from ``stdin`` until ``stop`` succeeds or the input ends.

    With a terminal on ``stdin`` the prompt gets line editing, history (kept in
    ``history_file``, default ``~/.fluxon_history``) and tab completion via readline.
    End of input (Ctrl-D, or the end of a piped script) leaves the console; the broker
    keeps running. Answers go to standard output.
    """
    stdin = stdin or sys.stdin
    console = Console(transport)
    interactive = _is_terminal(stdin)
    if interactive:
        _setup_readline(history_file)
        _restore_terminal_at_exit(stdin)
    if banner is not None:
        click.echo(banner)
    while True:
        try:
            line = _read_line(stdin, prompt if interactive else None)
        except EOFError:
            click.echo("\n" + leave_message)
            break
        except KeyboardInterrupt:
            click.echo("\n(type `stop` to stop the broker)")
            continue
        if interactive:
            _remember(line, history_file)
        if not execute_line(console, line):
            break


def _read_line(stdin: TextIO, prompt: str | None) -> str:
    """One line; ``input()`` (readline editing) on the process's own terminal."""
    if prompt is not None and stdin is sys.stdin:
        return input(prompt)
    if prompt is not None:
        click.echo(prompt, nl=False)
    line = stdin.readline()
    if not line:
        raise EOFError
    return line


def run_console_thread(transport: ControlTransport, **kwargs: Any) -> threading.Thread:
    """Start :func:`run_console` in a daemon thread (the broker's run loop keeps the main thread)."""
    thread = threading.Thread(target=run_console, args=(transport,), kwargs=kwargs,
                              name="fluxon-console", daemon=True)
    thread.start()
    return thread


def attach_console(control_endpoint: str, keys: Any = None) -> threading.Thread:
    """The interactive console of a broker process, as a control client of its own socket.

    ``keys``: the broker's :class:`~fluxon.keys.DeploymentKeys` (the console signs in with
    the admin keypair), or None for a plain broker. Returns the console's daemon thread.
    """
    return run_console_thread(SocketTransport(control_endpoint, keys=keys),
                              banner="fluxon console: type `help` for the commands, `stop` to stop "
                                     "the broker (Ctrl-D leaves the console)")


def stdin_is_interactive() -> bool:
    """True when standard input is a terminal and this process is its foreground job.

    A broker started in the background (``fluxon broker &``) must not open the console:
    reading the terminal would suspend it (SIGTTIN).
    """
    try:
        fd = sys.stdin.fileno()
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (AttributeError, ValueError, OSError):
        return False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _restore_terminal_at_exit(stdin: TextIO) -> None:
    """Put the terminal's settings back at exit, even if the broker stops mid-prompt."""
    try:
        import termios

        fd = stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        return

    def restore() -> None:
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        except (OSError, termios.error):
            pass

    atexit.register(restore)


def _history_path(history_file: str | Path | None) -> Path:
    return Path(history_file) if history_file else Path.home() / ".fluxon_history"


def _setup_readline(history_file: str | Path | None) -> None:
    try:
        import readline
    except ImportError:  # not every platform has it; the console still works line by line
        return
    path = str(_history_path(history_file))
    readline.set_history_length(1000)
    try:
        readline.read_history_file(path)
    except OSError:
        pass  # no history yet
    try:
        readline.write_history_file(path)  # creates the file (appends need one) and trims it
    except OSError as exc:
        logger.debug("console history disabled: %s", exc)
    readline.set_completer(_Completer(console_group).complete)
    readline.set_completer_delims(" \t")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")


def _remember(line: str, history_file: str | Path | None) -> None:
    """Append ``line`` to the history file at once: the broker may exit right after `stop`."""
    if not line.strip():
        return
    try:
        import readline

        readline.append_history_file(1, str(_history_path(history_file)))
    except (ImportError, OSError) as exc:
        logger.debug("console history not saved: %s", exc)


class _Completer:
    """readline completion over command names, sub-commands, choices and options."""

    def __init__(self, group: click.Group) -> None:
        self.group = group
        self._matches: list[str] = []

    def candidates(self, words: Sequence[str], prefix: str) -> list[str]:
        """Completions for ``prefix`` after the complete ``words`` already typed."""
        command: click.Command = self.group
        for word in words:
            if isinstance(command, click.Group) and word in command.commands:
                command = command.commands[word]
        names: list[str] = list(command.commands) if isinstance(command, click.Group) else []
        for param in command.params:
            if isinstance(param, click.Option):
                names.extend(param.opts)
            elif isinstance(param.type, click.Choice):
                names.extend(str(choice) for choice in param.type.choices)
        return sorted(name for name in set(names) if name.startswith(prefix))

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            import readline

            buffer = readline.get_line_buffer()[:readline.get_begidx()]
            try:
                words = shlex.split(buffer)
            except ValueError:
                words = buffer.split()
            self._matches = [name + " " for name in self.candidates(words, text)]
        return self._matches[state] if state < len(self._matches) else None


# The metrics views (fluxon/top.py) are console commands too: `metrics`, `top`.
from fluxon.top import metrics_command, top_command  # noqa: E402
console_group.add_command(metrics_command)
console_group.add_command(top_command)
