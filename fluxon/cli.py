"""The ``fluxon`` command line: one click group, every command registered explicitly.

Each area keeps its commands in its own module and registers them here, so a
broken import fails loudly instead of hiding a command.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    """Ctrl-C while the commands are still being imported: leave quietly, not with a traceback."""
    sys.exit(130)


# Installed before the imports below (which take a while on a busy machine); main() puts Python's
# own handler back, so commands see KeyboardInterrupt as usual (click prints "Aborted!").
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import click  # noqa: E402

from fluxon import __version__  # noqa: E402
from fluxon.console import SuggestingGroup  # noqa: E402
from fluxon.logs import configure_logging, log_options  # noqa: E402
from fluxon.types import LOG_LEVELS  # noqa: E402

__all__ = ["main"]


# help_option_names is inherited by every sub-command's context: `-h` works everywhere.
@click.group(cls=SuggestingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="fluxon")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False),
              help="Logging level for the fluxon.* loggers.")
@log_options
def main(log_level: str, log_format: str | None) -> None:
    """Fluxon: broker, workers, clients and schema tools."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    configure_logging(log_level.upper(), log_format)


# Command registration: one line per command, grouped by area.
from fluxon.keys_cli import client_key, keygen, pubkey  # noqa: E402  (security)
main.add_command(keygen)
main.add_command(pubkey)
main.add_command(client_key)
from fluxon.console import ctl  # noqa: E402  (console)
main.add_command(ctl)
from fluxon.worker.cli import worker_command  # noqa: E402  (worker)
main.add_command(worker_command)
from fluxon.endpoint import run_command  # noqa: E402  (worker: broker + local workers)
main.add_command(run_command)
from fluxon.broker.cli import broker_command  # noqa: E402  (broker)
main.add_command(broker_command)
from fluxon.database.schema import schema_cli  # noqa: E402  (schema)
main.add_command(schema_cli)
from fluxon.top import fluxon_top  # noqa: E402  (operations: the live view)
main.add_command(fluxon_top)

from fluxon.logs import log_format_parameter  # noqa: E402
for _command in main.commands.values():  # `fluxon COMMAND --log-format json` too (not console sub-commands)
    _command.params.append(log_format_parameter())


if __name__ == "__main__":
    main()
