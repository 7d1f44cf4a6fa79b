"""Test an application against a real broker and worker: ``TestServer(router)``.

    from fluxon.testing import TestServer
    from myapp.router import router

    def test_whoami():
        with TestServer(router) as server, server.client() as client:
            assert client.send_request("whoami") == {"user": None}

A :class:`TestServer` runs, inside the test process, a real :class:`~fluxon.broker.Broker`
and a real :class:`~fluxon.worker.Worker` (each on a thread of its own) that talk over
CurveZMQ on loopback TCP ports chosen by the system, with a deployment key made for this
server alone. The application's models are bound to a fresh SQLite file in a temporary
folder whose tables are created from the models as they are now (no snapshot needed),
so ``request.db``, ``User.insert(...)`` and ``server.db`` all reach the same test
database. Requests take the production path: encoding, ZAP, sessions bound to the
client's key, ``login``/``login_required``, the restricted decoder and typed errors.

While it runs, new password hashes use cheap scrypt parameters
(:func:`fluxon.database.passwords.fast_hashes_for_tests`), as Django's test settings use a
fast hasher: a signup and a login cost milliseconds instead of the production setting's
16 MiB, 5-lane scrypt.

In-process threads (not child processes) keep start-up short and let a test read and
write ``server.db`` directly; the price is that views share the test's interpreter
(module globals included). The models' previous database bindings are put back on exit.
The pytest fixtures ``fluxon_server`` and ``fluxon_client`` live in
:mod:`fluxon.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fluxon.broker.config import BrokerConfig
from fluxon.broker.core import Broker
from fluxon.client import AsyncConnectionHandler, ConnectionHandler
from fluxon.database.manipulation import SqliteDatabase
from fluxon.database.passwords import fast_hashes_for_tests
from fluxon.database.models import collect_models
from fluxon.errors import ConfigurationError, Timeout
from fluxon.keys import DeploymentKeys, derive_keys, generate_private_key
from fluxon.routing import Router
from fluxon.worker.core import Worker, WorkerConfig

__all__ = ["TestServer"]

log = logging.getLogger("fluxon.testing")

_LOOPBACK_ANY_PORT = "tcp://127.0.0.1:*"


class TestServer:
    """A broker and one worker for ``router``, on a temporary database; a context manager.

    ``concurrency``: requests the worker runs at once. ``debug``: remote tracebacks in
    errors (off by default, as in production). ``start_timeout_s``: how long :meth:`start`
    waits for the worker to register before raising :class:`~fluxon.errors.Timeout`.
    """

    __test__ = False  # a class named Test* that pytest must not collect

    def __init__(self, router: Router, *, concurrency: int = 4, debug: bool = False,
                 start_timeout_s: float = 10.0, client_timeout_s: float = 10.0) -> None:
        if not isinstance(router, Router):
            raise ConfigurationError("TestServer needs a fluxon.routing.Router")
        self.router = router
        self.concurrency = concurrency
        self.debug = debug
        self.start_timeout_s = start_timeout_s
        self.client_timeout_s = client_timeout_s
        self.private_key = generate_private_key()  # for `fluxon ctl --key-file` against this server
        self.keys: DeploymentKeys = derive_keys(self.private_key)
        self.db: SqliteDatabase | None = None
        self.broker: Broker | None = None
        self.worker: Worker | None = None
        self.folder: Path | None = None
        self._threads: list[threading.Thread] = []
        self._clients: list[Any] = []
        self._previous_bindings: list[tuple[Any, Any]] = []
        self._fast_hashes: contextlib.ExitStack | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> TestServer:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Create the database, start the broker and the worker, wait until the worker is registered."""
        if self.broker is not None:
            return
        self.folder = Path(tempfile.mkdtemp(prefix="fluxon-test-"))
        self._fast_hashes = contextlib.ExitStack()
        self._fast_hashes.enter_context(fast_hashes_for_tests())
        try:
            self._open_database()
            self.broker = Broker(BrokerConfig(
                frontend=_LOOPBACK_ANY_PORT, backend=_LOOPBACK_ANY_PORT, control=_LOOPBACK_ANY_PORT,
                keys=self.keys, heartbeat_interval_s=0.5, debug=self.debug, stop_timeout_s=5.0))
            self.broker.start()
            self._spawn(self.broker.run, "fluxon-test-broker")
            self.worker = Worker(self.router, WorkerConfig(
                connect=self.broker.backend_endpoint, app=self.router.import_path or "TestServer",
                concurrency=self.concurrency, keys=self.keys, heartbeat_interval_s=0.5,
                reconnect_initial_s=0.05, shutdown_timeout_s=5.0, debug=self.debug), db=self.db)
            self._spawn(lambda: asyncio.run(self.worker.serve(install_signal_handlers=False)),
                        "fluxon-test-worker")
            self._wait_for_worker()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the clients, stop the worker and the broker, delete the temporary database."""
        for client in self._clients:
            try:
                client.close()
            except Exception:  # an async client bound to a closed loop; nothing left to release
                log.debug("closing a test client failed", exc_info=True)
        self._clients.clear()
        if self.worker is not None:
            self.worker.stop()
            for thread in self._threads[1:]:  # the worker's: it says goodbye before the broker goes
                thread.join(10)
        if self.broker is not None:
            self.broker.stop()
        for thread in self._threads:
            thread.join(10)
        self._threads.clear()
        self.worker = self.broker = None
        if self.db is not None:
            self.db.close_all()
            self.db = None
        for model, database in self._previous_bindings:
            model._meta.database = database
        self._previous_bindings.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self._fast_hashes is not None:
            self._fast_hashes.close()
            self._fast_hashes = None

    # ------------------------------------------------------------------ clients

    @property
    def port(self) -> int:
        """The frontend's TCP port on 127.0.0.1."""
        return int(self._running().frontend_endpoint.rsplit(":", 1)[1])

    @property
    def server_key(self) -> str:
        """The broker's public key (what a client passes as ``server_key``)."""
        return self.keys.broker.public_text

    @property
    def control_endpoint(self) -> str:
        """The control socket (``fluxon ctl --control ...`` with :attr:`keys`' admin keypair)."""
        return self._running().control_endpoint

    def client(self, **kwargs: Any) -> ConnectionHandler:
        """A blocking client connected to this server (closed with the server)."""
        client = ConnectionHandler("127.0.0.1", self.port, **self._client_options(kwargs))
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> AsyncConnectionHandler:
        """An asyncio client connected to this server (bound to the loop of its first request)."""
        client = AsyncConnectionHandler("127.0.0.1", self.port, **self._client_options(kwargs))
        self._clients.append(client)
        return client

    def _client_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"server_key": self.server_key, "timeout_s": self.client_timeout_s, **kwargs}

    # ------------------------------------------------------------------ internals

    def _running(self) -> Broker:
        if self.broker is None:
            raise ConfigurationError("the TestServer is not running: use `with TestServer(router) as server:`")
        return self.broker

    def _open_database(self) -> None:
        models = collect_models(self.router.models) if self.router.models is not None else []
        self._previous_bindings = [(model, model._meta.database) for model in models]
        self.db = SqliteDatabase(self.folder / "test.sqlite3", models=models or None)
        if models:
            self.db.create_tables(models)
        self.db.close()  # this thread's connection; the views open their own

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _wait_for_worker(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while not len(self.broker.workers):
            if time.monotonic() > deadline:
                raise Timeout(f"the test worker did not register within {self.start_timeout_s:g} s")
            if not all(thread.is_alive() for thread in self._threads):
                raise ConfigurationError("the test broker or worker stopped while starting (see the log)")
            time.sleep(0.005)
