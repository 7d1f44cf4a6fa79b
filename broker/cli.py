"""``fluxon broker``: run a broker in the foreground until SIGTERM/SIGINT (exit 0)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from fluxon.broker.config import DEFAULT_SESSIONS_PATH, SESSIONS_PATH_ENV, BrokerConfig, default_sessions_path
from fluxon.broker.core import Broker
from fluxon.broker.limits import BrokerLimits, limit_options
from fluxon.errors import ConfigurationError
from fluxon.logs import json_logs, slow_request_option

__all__ = ["broker_command"]

log = logging.getLogger("fluxon.broker")


@click.command("broker")
@click.option("--bind", "frontend", default=BrokerConfig.frontend, show_default=True,
              help="Frontend endpoint (clients).")
@click.option("--backend", default=BrokerConfig.backend, show_default=True, help="Backend endpoint (workers).")
@click.option("--control", default=BrokerConfig.control, show_default=True,
              help="Control endpoint (fluxon ctl); 'none' disables it.")
@click.option("--key-file", type=click.Path(dir_okay=False),
              help="File holding the deployment private key (else $FLUXON_PRIVATE_KEY).")
@click.option("--insecure", is_flag=True, help="Plain mode: no CURVE encryption or authentication.")
@click.option("--insecure-bind-anywhere", is_flag=True,
              help="Allow plain mode on non-loopback addresses (traffic is readable by the network).")
@click.option("--allow-clients", "allow_clients_dir", type=click.Path(file_okay=False),
              help="Only client keys in this directory may connect.")
@click.option("--trusted-clients", "trusted_clients_dir", type=click.Path(file_okay=False),
              help="Client keys in this directory may send arbitrary pickled objects.")
@click.option("--sessions-db", "sessions_path", type=click.Path(dir_okay=False),
              help=f"SQLite file (its folder created) or postgresql:// URL sessions persist in (default: "
                   f"${SESSIONS_PATH_ENV} or {DEFAULT_SESSIONS_PATH}); ':memory:' keeps them in memory only.")
@click.option("--session-idle-timeout-s", type=click.FloatRange(min=1), default=BrokerConfig.session_idle_timeout_s,
              show_default=True, help="A session expires when its client has been silent this long.")
@click.option("--session-lifetime-s", type=click.FloatRange(min=1), default=BrokerConfig.session_lifetime_s,
              show_default=True, help="A session expires this long after it was created or rotated (login/logout).")
@click.option("--max-sessions", type=click.IntRange(min=1), default=BrokerConfig.max_sessions, show_default=True,
              help="Sessions kept at most; past it the least recently seen anonymous ones are evicted.")
@click.option("--heartbeat-interval-s", type=click.FloatRange(min=0.01), default=BrokerConfig.heartbeat_interval_s,
              show_default=True, help="Seconds between heartbeats to each worker.")
@click.option("--heartbeat-liveness", type=click.IntRange(min=1), default=BrokerConfig.heartbeat_liveness,
              show_default=True, help="Missed heartbeat intervals after which a silent worker is removed.")
@click.option("--no-worker-grace-s", type=click.FloatRange(min=0), default=BrokerConfig.no_worker_grace_s,
              show_default=True,
              help="With no worker registered this long (after start or after the last one left), requests "
                   "get Unavailable at once instead of waiting.")
@click.option("--max-queue", type=click.IntRange(min=0), default=BrokerConfig.max_queue, show_default=True,
              help="Requests waiting for a worker before clients get Overloaded.")
@click.option("--max-message-bytes", type=click.IntRange(min=1024), default=BrokerConfig.max_message_bytes,
              show_default=True,
              help="Largest message accepted on any socket; libzmq closes a connection that sends more.")
@click.option("--console/--no-console", default=None,
              help="Interactive console on stdin (default: on when stdin is this job's terminal).")
@click.option("--debug", is_flag=True, help="Send remote tracebacks in error replies; log at DEBUG.")
@click.option("--metrics-bind", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics over HTTP here (e.g. 127.0.0.1:9464).")
@slow_request_option
@limit_options
def broker_command(frontend: str, backend: str, control: str, key_file: str | None, insecure: bool,
                   insecure_bind_anywhere: bool, allow_clients_dir: str | None,
                   trusted_clients_dir: str | None, sessions_path: str | None, session_idle_timeout_s: float,
                   session_lifetime_s: float, max_sessions: int, heartbeat_interval_s: float,
                   heartbeat_liveness: int, no_worker_grace_s: float, max_queue: int, max_message_bytes: int,
                   console: bool | None, debug: bool, metrics_bind: str | None,
                   slow_request_ms: int | None, limits: BrokerLimits) -> None:
    """Run the broker: route client requests to workers, own sessions, answer the control socket."""
    from fluxon.keys import derive_keys, load_private_key

    if debug:
        logging.getLogger("fluxon").setLevel(logging.DEBUG)
    try:
        private_key = load_private_key(key_file)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    if private_key is None and not insecure:
        raise click.UsageError("secure mode needs the deployment private key: pass --key-file FILE or set "
                               "FLUXON_PRIVATE_KEY (make one with `fluxon keygen`), or pass --insecure for "
                               "plain local development")
    if insecure and private_key is not None:
        log.warning("--insecure given: the private key is ignored and CURVE is OFF")
    config = BrokerConfig(
        frontend=frontend, backend=backend, control=None if control.lower() == "none" else control,
        keys=None if insecure else derive_keys(private_key),
        allow_clients_dir=allow_clients_dir, trusted_clients_dir=trusted_clients_dir,
        sessions_path=default_sessions_path() if sessions_path is None else sessions_path,
        session_idle_timeout_s=session_idle_timeout_s,
        session_lifetime_s=session_lifetime_s, max_sessions=max_sessions, heartbeat_interval_s=heartbeat_interval_s,
        heartbeat_liveness=heartbeat_liveness, no_worker_grace_s=no_worker_grace_s, max_queue=max_queue,
        max_message_bytes=max_message_bytes, debug=debug, metrics_bind=metrics_bind,
        slow_request_ms=slow_request_ms, limits=limits,
        insecure_bind_anywhere=insecure_bind_anywhere)
    try:
        broker = Broker(config)
        broker.start()
    except (ConfigurationError, ValueError, OSError) as exc:
        raise click.ClickException(getattr(exc, "message", None) or str(exc)) from exc
    if insecure and not json_logs():  # JSON logs: Broker.start() logged the same warning as a line
        click.echo("WARNING: fluxon broker runs INSECURE (no encryption, no authentication)", err=True)
    if console is None:
        from fluxon.console import stdin_is_interactive
        console = stdin_is_interactive()
    if console:
        if broker.control_endpoint is None:
            raise click.UsageError("--console needs the control socket (do not pass --control none)")
        threading.Thread(target=_console_when_ready, args=(broker, config), name="fluxon-console-start",
                         daemon=True).start()

    def _on_signal(signum: int, frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        broker.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    broker.run()


def _console_when_ready(broker: Broker, config: BrokerConfig) -> None:
    """Open the console once the broker logged "broker ready" (the console is a control client)."""
    from fluxon.console import attach_console

    broker.ready.wait()
    attach_console(broker.control_endpoint, keys=config.keys)
