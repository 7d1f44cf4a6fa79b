"""One-command development server: a broker plus N local workers (the seed's API).

    from fluxon.endpoint import AsyncServer, run_server
    run_server(AsyncServer(port=8080, secure=False, router=router))

or ``fluxon run package.module:router --workers 2 --port 8080 --insecure``.

The workers are forked first (they inherit the Router, even one defined in
``__main__``), then the broker runs in a thread of this process. Ctrl-C or
SIGTERM stops the workers gracefully (in-flight requests finish), then the
broker; each worker also dies with this process if it is killed outright, so no
process is left behind. Clients connect to ``host:port``; workers on other
machines may join at ``host:port+1`` (the backend), and ``fluxon ctl`` talks to
``host:port+2`` (the control socket).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import click

from fluxon.broker import Broker, BrokerConfig
from fluxon.broker.config import DEFAULT_SESSIONS_PATH, SESSIONS_PATH_ENV, default_sessions_path
from fluxon.errors import ConfigurationError
from fluxon.keys import DeploymentKeys
from fluxon.logs import configure_logging, slow_request_option
from fluxon.reload import Reloader, watched_folder
from fluxon.routing import Router, load_router
from fluxon.worker.cli import apply_database_options, database_options
from fluxon.worker.core import Worker, WorkerConfig, keys_for
from fluxon.worker.supervisor import Supervisor

__all__ = ["AsyncServer", "run_server", "run_command"]

log = logging.getLogger("fluxon.endpoint")

_CLI_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class AsyncServer:
    """Settings of a broker with local workers; :func:`run_server` (or :meth:`serve`) runs it."""

    def __init__(self, port: int = 8080, secure: bool = True, router: Router | None = None, *,
                 host: str = "127.0.0.1", workers: int = 2, concurrency: int = 16,
                 backend_port: int | None = None, control_port: int | None = None,
                 key_file: str | None = None, sessions_path: str | os.PathLike | None = None,
                 heartbeat_interval_s: float = 1.0, heartbeat_liveness: int = 3,
                 shutdown_timeout_s: float = 10.0, insecure_bind_anywhere: bool = False,
                 debug: bool | None = None, console: bool | None = None,
                 slow_request_ms: int | None = None, metrics_bind: str | None = None,
                 reload: bool = False) -> None:
        if not isinstance(router, Router):
            raise ConfigurationError("AsyncServer needs router=Router(...) (from fluxon.routing)")
        if workers < 1:
            raise ConfigurationError(f"workers must be >= 1, got {workers}")
        self.port = int(port)
        self.secure = secure
        self.router = router
        self.host = host
        self.workers = workers
        self.concurrency = concurrency
        self.backend_port = self.port + 1 if backend_port is None else int(backend_port)
        self.control_port = self.port + 2 if control_port is None else int(control_port)
        self.key_file = key_file
        self.sessions_path = sessions_path
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_liveness = heartbeat_liveness
        self.shutdown_timeout_s = shutdown_timeout_s
        self.insecure_bind_anywhere = insecure_bind_anywhere
        self.debug = router.debug if debug is None else debug
        self.console = console
        self.slow_request_ms = slow_request_ms
        self.metrics_bind = metrics_bind
        self.reload = reload
        if reload and not router.import_path:
            raise ConfigurationError("reload needs the application as an import path: "
                                     "`fluxon run package.module:router --reload`")

    def __repr__(self) -> str:
        return (f"<AsyncServer {self.host}:{self.port} secure={self.secure} workers={self.workers} "
                f"routes={sorted(self.router.routes)!r}>")

    def _endpoint(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{port}"

    def _sessions_path(self) -> str:
        """The same rule as ``fluxon broker``: the given file, else the default one (":memory:" opts out)."""
        return default_sessions_path() if self.sessions_path is None else os.fspath(self.sessions_path)

    def serve(self) -> int:
        """Run the broker and the workers until Ctrl-C/SIGTERM; 0 after a clean shutdown, 1 when the broker failed."""
        keys = keys_for(self.router, key_file=self.key_file, insecure=not self.secure)
        broker = Broker(BrokerConfig(
            frontend=self._endpoint(self.port), backend=self._endpoint(self.backend_port),
            control=self._endpoint(self.control_port), keys=keys,
            sessions_path=self._sessions_path(), heartbeat_interval_s=self.heartbeat_interval_s,
            heartbeat_liveness=self.heartbeat_liveness, debug=self.debug,
            insecure_bind_anywhere=self.insecure_bind_anywhere, slow_request_ms=self.slow_request_ms,
            metrics_bind=self.metrics_bind))
        worker_config = WorkerConfig(
            connect=self._endpoint(self.backend_port), app=self.router.import_path or _script_name(),
            concurrency=self.concurrency, keys=keys, heartbeat_interval_s=self.heartbeat_interval_s,
            heartbeat_liveness=self.heartbeat_liveness, shutdown_timeout_s=self.shutdown_timeout_s,
            debug=self.debug, slow_request_ms=self.slow_request_ms)
        router = self.router
        if self.reload:
            broker.start()
            supervisor: Any = Reloader(broker, self._worker_argv(), self.workers,
                                       watched_folder(router.import_path), keys=keys)
        else:
            supervisor = Supervisor(lambda: Worker(router, worker_config).run(), self.workers,
                                    stop_timeout_s=self.shutdown_timeout_s + 5)
            supervisor.start()  # fork before this process opens any ZeroMQ context
            try:
                broker.start()
            except BaseException:
                supervisor.terminate()
                raise
        failures: list[BaseException] = []
        thread = threading.Thread(target=_run_broker, args=(broker, supervisor, failures), name="fluxon-broker")
        thread.start()
        self._maybe_attach_console(broker, keys)
        try:
            supervisor.run()
        finally:
            broker.stop()
            thread.join()
        if failures:
            log.error("server stopped: the broker failed (%s)", type(failures[0]).__name__)
            return 1
        log.info("server stopped")
        return 0

    def _worker_argv(self) -> list[str]:
        """``fluxon worker APP ...`` with this server's settings (the reloader starts fresh interpreters)."""
        level = logging.getLevelName(logging.getLogger("fluxon").getEffectiveLevel())
        argv = [sys.executable, "-m", "fluxon.cli", "--log-level", level if level in _CLI_LEVELS else "INFO",
                "worker", self.router.import_path, "--connect", self._endpoint(self.backend_port),
                "--concurrency", str(self.concurrency), "--heartbeat-interval-s", str(self.heartbeat_interval_s),
                "--heartbeat-liveness", str(self.heartbeat_liveness),
                "--shutdown-timeout-s", str(self.shutdown_timeout_s)]
        if not self.secure:
            argv.append("--insecure")
        elif self.key_file:
            argv += ["--key-file", self.key_file]
        if self.debug:
            argv.append("--debug")
        if self.slow_request_ms is not None:
            argv += ["--slow-request-ms", str(self.slow_request_ms)]
        return argv

    def _maybe_attach_console(self, broker: Broker, keys: DeploymentKeys | None) -> None:
        """The seed's interactive console (`help`, `status`, `saveschema`, `stop`...) on a terminal."""
        from fluxon.console import attach_console, stdin_is_interactive

        wanted = stdin_is_interactive() if self.console is None else self.console
        if not wanted:
            return
        if broker.control_endpoint is None:
            log.warning("no console: the control socket is disabled")
            return
        attach_console(broker.control_endpoint, keys)


def _script_name() -> str:
    """What a Router defined in a script (``python server.py``) is called in `fluxon ctl workers`."""
    return f"{os.path.basename(sys.argv[0]) or '__main__'}:router"


def _run_broker(broker: Broker, supervisor: Supervisor | Reloader, failures: list[BaseException]) -> None:
    """Run the broker; a failure is recorded in ``failures`` (``serve`` then returns 1, not 0)."""
    try:
        broker.run()
    except BaseException as exc:  # noqa: BLE001 - whatever stopped it, the server must not exit 0
        failures.append(exc)
        log.exception("the broker failed")
    finally:
        supervisor.stop()  # a broker that stops for any reason takes the workers with it


def run_server(server: AsyncServer) -> int:
    """Run ``server`` in the foreground (the seed's entry point); returns 0 after Ctrl-C/SIGTERM."""
    if not logging.getLogger().handlers:
        configure_logging(logging.INFO)
    return server.serve()


@click.command("run")
@click.argument("app")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 512),
              help="Local worker processes.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Client port; the backend uses port+1 and the control socket port+2.")
@click.option("--backend-port", type=click.IntRange(1, 65535), default=None,
              help="Port for workers (default: port+1).")
@click.option("--control-port", type=click.IntRange(1, 65535), default=None,
              help="Port of the control socket for `fluxon ctl` (default: port+2).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 65535),
              help="Requests each worker runs at once.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Deployment private key (else $FLUXON_PRIVATE_KEY or the Router's).")
@click.option("--insecure", is_flag=True, help="Plain mode: no CURVE (loopback only).")
@click.option("--sessions-db", "sessions_path", type=click.Path(dir_okay=False), default=None,
              help=f"SQLite file sessions persist in, its folder created (default: ${SESSIONS_PATH_ENV} or "
                   f"{DEFAULT_SESSIONS_PATH}); ':memory:' keeps them in memory only.")
@click.option("--heartbeat-interval-s", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between heartbeats between the broker and each worker.")
@click.option("--debug", is_flag=True, help="Send remote tracebacks to clients.")
@click.option("--console/--no-console", default=None,
              help="Interactive console on stdin (default: when stdin is a terminal).")
@click.option("--metrics-bind", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics over HTTP here (e.g. 127.0.0.1:9464).")
@slow_request_option
@click.option("--reload", is_flag=True,
              help="Start new workers when a Python file of APP changes (the broker and its sessions stay up).")
@database_options
def run_command(app: str, workers: int, port: int, backend_port: int | None, control_port: int | None,
                host: str, concurrency: int, key_file: str | None, insecure: bool, sessions_path: str | None,
                heartbeat_interval_s: float, debug: bool, console: bool | None,
                metrics_bind: str | None, slow_request_ms: int | None, reload: bool,
                database_url: str | None, database_password_file: str | None) -> None:
    """Run a broker and WORKERS local workers for APP ("package.module:router") in one command."""
    try:
        router = load_router(app)
        apply_database_options(router, database_url, database_password_file)
        server = AsyncServer(port=port, secure=not insecure, router=router, host=host, workers=workers,
                             backend_port=backend_port, control_port=control_port,
                             concurrency=concurrency, key_file=key_file, sessions_path=sessions_path,
                             heartbeat_interval_s=heartbeat_interval_s, debug=debug or None,
                             console=console, slow_request_ms=slow_request_ms, metrics_bind=metrics_bind,
                             reload=reload)
        code = server.serve()
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    except (ValueError, OSError) as exc:  # --metrics-bind malformed or its port taken
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(code)
