"""``fluxon worker APP``: run one worker, or supervise ``--processes N`` of them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import click

from fluxon.errors import ConfigurationError
from fluxon.logs import slow_request_option
from fluxon.protocol import MAX_MESSAGE_BYTES
from fluxon.database.backends.urls import URL_ENV
from fluxon.routing import Router, load_router
from fluxon.worker.core import Worker, WorkerConfig, keys_for
from fluxon.worker.supervisor import Supervisor

__all__ = ["worker_command", "database_options", "apply_database_options"]

log = logging.getLogger("fluxon.worker")


def database_options(command: Callable) -> Callable:
    """``--database-url`` (or $FLUXON_DATABASE_URL) and ``--database-password-file``."""
    command = click.option(
        "--database-password-file", type=click.Path(dir_okay=False, exists=True), default=None,
        help="File holding the PostgreSQL password (keeps it out of the URL and of ps).")(command)
    return click.option(
        "--database-url", envvar=URL_ENV, show_envvar=True, default=None,
        help="The application's database: postgresql://user@host:5432/db or sqlite:///file "
             "(default: the Router's). Prefer the environment variable or a password file "
             "to a password in argv.")(command)


def apply_database_options(router: Router, url: str | None, password_file: str | None) -> None:
    """Let the command line override the Router's database."""
    if url:
        router.use_database_url(url)
    if password_file:
        router.database_password_file = password_file


@click.command("worker")
@click.argument("app")
@click.option("--connect", default="tcp://127.0.0.1:8081", show_default=True,
              help="The broker's backend endpoint.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 65535),
              help="Requests one worker process runs at once (thread pool size).")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 512),
              help="Worker processes to start and supervise.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the deployment private key (else $FLUXON_PRIVATE_KEY or the Router's).")
@click.option("--insecure", is_flag=True, help="Plain mode: no CURVE encryption (local development).")
@click.option("--heartbeat-interval-s", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between heartbeats to the broker (match the broker's).")
@click.option("--heartbeat-liveness", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Missed heartbeat intervals after which the broker is taken as gone and the worker reconnects.")
@click.option("--shutdown-timeout-s", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="How long in-flight requests may take to finish on SIGTERM.")
@click.option("--max-message-bytes", default=MAX_MESSAGE_BYTES, show_default=True,
              type=click.IntRange(1024), help="Larger messages from the broker drop the connection.")
@click.option("--debug", is_flag=True, help="Send remote tracebacks to clients.")
@slow_request_option
@database_options
def worker_command(app: str, connect: str, concurrency: int, processes: int, key_file: str | None,
                   insecure: bool, heartbeat_interval_s: float, heartbeat_liveness: int,
                   shutdown_timeout_s: float, max_message_bytes: int, debug: bool,
                   slow_request_ms: int | None, database_url: str | None,
                   database_password_file: str | None) -> None:
    """Serve the views of APP ("package.module:router") to the broker at --connect."""
    try:
        router = load_router(app)
        apply_database_options(router, database_url, database_password_file)
        config = WorkerConfig(connect=connect, app=app, concurrency=concurrency,
                              keys=keys_for(router, key_file=key_file, insecure=insecure),
                              heartbeat_interval_s=heartbeat_interval_s,
                              heartbeat_liveness=heartbeat_liveness,
                              shutdown_timeout_s=shutdown_timeout_s,
                              max_message_bytes=max_message_bytes, debug=debug,
                              slow_request_ms=slow_request_ms)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    if config.keys is None:
        log.warning("plain mode: traffic between this worker and the broker is NOT encrypted")
    if processes == 1:
        raise SystemExit(Worker(router, config).run())
    supervisor = Supervisor(lambda: Worker(router, config).run(), processes,
                            stop_timeout_s=shutdown_timeout_s + 5)
    supervisor.start()
    raise SystemExit(supervisor.run())
