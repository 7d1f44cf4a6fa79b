"""The control socket's commands (data in, data out) and a tiny client to send one.

A command is JSON ``{"command": NAME, "args": {...}}`` on the FLXC1 protocol; the
broker answers with a RESULT holding plain data or an error dict. The table
``COMMANDS`` maps each name to a function ``(broker, args) -> result``; nothing
here executes code sent by the client.

=============  ==================================================================
command        effect / result
=============  ==================================================================
status         uptime, workers, queue depth, requests/s, error counts, sessions...
workers        one row per worker: id, host, pid, credit, in flight, served, age
sessions       count and one row per session (sid, user id, client key, times)
sessions-kill  {"sid": str}: end one session
drain          pause dispatch: requests wait in the (bounded) queue
resume         dispatch again
debug          {"on": bool}: tracebacks in error replies, debug flag in contexts
log-level      {"level": "DEBUG"|"INFO"|"WARNING"|"ERROR"}: the fluxon loggers
stop           graceful stop (answers first, then stops)
metrics        {"text": Prometheus text format, "snapshot": the raw counters}
retire         {"pids": [int]}: dispatch nothing more to those workers (a reload
               replaces them; their running requests finish)
admin          {"op": ...}: pause dispatch, wait for in-flight jobs, run the op
               on exactly one worker, relay its ADMIN_REPLY, resume
=============  ==================================================================
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from fluxon import protocol as p
from fluxon.errors import (BadRequest, ConnectionError, FluxonError, ProtocolError, Timeout,
                           Unavailable, error_from_dict)
from fluxon.handshake import HandshakeWatch, describe_handshake_failure
from fluxon.security import configure_curve_client
from fluxon.types import LOG_LEVELS, JSONObject, RoutingId

if TYPE_CHECKING:
    from fluxon.broker.core import Broker
    from fluxon.keys import DeploymentKeys

__all__ = ["COMMANDS", "ADMIN_OPS", "AdminOperation", "ControlError", "run_control_command",
           "send_control_command"]

ADMIN_OPS = frozenset({"saveschema", "updateschema", "schemas"})
#: Admin operations that only read: dispatch goes on while one runs.
READ_ONLY_ADMIN_OPS = frozenset({"schemas"})
#: The longest deadline an ``admin`` command may ask for (``{"timeout_s": ...}``).
_MAX_ADMIN_TIMEOUT_S = 24 * 3600.0


class ControlError(Exception):
    """A control command failed; ``error`` is the typed error sent back to the admin."""

    def __init__(self, error: FluxonError) -> None:
        super().__init__(error.message)
        self.error = error


class AdminOperation:
    """One ``admin`` command in progress: who asked, which op, and which worker runs it."""

    #: Returned by a command whose RESULT is sent later.
    PENDING: Any = object()

    def __init__(self, control_client: RoutingId, command_id: int, op: JSONObject, deadline: float) -> None:
        self.control_client = control_client
        self.command_id = command_id
        self.op = op
        self.deadline = deadline
        self.job_id: int | None = None
        self.worker: RoutingId | None = None
        self.read_only = op.get("op") in READ_ONLY_ADMIN_OPS


def _status(broker: Broker, args: JSONObject) -> Any:
    return broker.status()


def _workers(broker: Broker, args: JSONObject) -> Any:
    now = time.monotonic()
    return {"workers": [w.describe(now) for w in broker.workers]}


def _sessions(broker: Broker, args: JSONObject) -> Any:
    rows = broker.sessions.list_sessions()
    return {"count": len(rows), "sessions": rows}


def _sessions_kill(broker: Broker, args: JSONObject) -> Any:
    sid = args.get("sid")
    if not isinstance(sid, str) or not sid:
        raise ControlError(BadRequest("sessions-kill needs {'sid': '<session id>'}"))
    return {"sid": sid, "killed": broker.sessions.kill(sid)}


def _drain(broker: Broker, args: JSONObject) -> Any:
    broker.set_paused(True)
    return {"draining": True}


def _resume(broker: Broker, args: JSONObject) -> Any:
    broker.set_paused(False)
    return {"draining": False}


def _debug(broker: Broker, args: JSONObject) -> Any:
    on = args.get("on")
    if not isinstance(on, bool):
        raise ControlError(BadRequest("debug needs {'on': true|false}"))
    broker.config.debug = on
    return {"debug": on}


def _log_level(broker: Broker, args: JSONObject) -> Any:
    level = str(args.get("level", "")).upper()
    if level not in LOG_LEVELS:
        raise ControlError(BadRequest(f"log-level needs one of {', '.join(LOG_LEVELS)}"))
    logging.getLogger("fluxon").setLevel(level)
    return {"level": level}


def _stop(broker: Broker, args: JSONObject) -> Any:
    keep_workers = args.get("keep_workers", False)
    if not isinstance(keep_workers, bool):
        raise ControlError(BadRequest("stop: keep_workers must be true or false"))
    broker.request_stop(shutdown_workers=not keep_workers)
    return {"stopping": True, "workers": "kept (they reconnect to the next broker)" if keep_workers
            else "told to finish their work and exit"}


def _metrics(broker: Broker, args: JSONObject) -> Any:
    now = time.monotonic()
    return {"text": broker.metrics_text(), "snapshot": broker.metrics.snapshot(),
            "status": broker.status(), "workers": [w.describe(now) for w in broker.workers]}


def _retire(broker: Broker, args: JSONObject) -> Any:
    pids = args.get("pids")
    if not isinstance(pids, list) or not all(isinstance(pid, int) for pid in pids):
        raise ControlError(BadRequest("retire needs {'pids': [<worker pid>, ...]}"))
    retired = [w.routing_id.hex() for w in broker.workers
               if w.info.get("pid") in pids and broker.workers.retire(w.routing_id)]
    return {"retired": retired}


COMMANDS: dict[str, Callable[[Any, JSONObject], Any]] = {
    "status": _status,
    "workers": _workers,
    "sessions": _sessions,
    "sessions-kill": _sessions_kill,
    "drain": _drain,
    "resume": _resume,
    "debug": _debug,
    "log-level": _log_level,
    "stop": _stop,
    "metrics": _metrics,
    "retire": _retire,
}


def run_control_command(broker: Broker, client: RoutingId, command: p.ControlCommand) -> Any:
    """Run one command; its result, or ``AdminOperation.PENDING`` when the answer comes later."""
    if command.command == "admin":
        return _admin(broker, client, command)
    handler = COMMANDS.get(command.command)
    if handler is None:
        raise ControlError(BadRequest(f"unknown control command {command.command!r}; "
                                      f"known: {', '.join(sorted([*COMMANDS, 'admin']))}"))
    return handler(broker, command.args)


def _admin(broker: Broker, client: RoutingId, command: p.ControlCommand) -> Any:
    op = command.args.get("op")
    if op not in ADMIN_OPS:
        raise ControlError(BadRequest(f"admin needs an 'op' among {', '.join(sorted(ADMIN_OPS))}"))
    if broker.admin_running:
        raise ControlError(Unavailable("another admin operation is running"))
    timeout_s = command.args.get("timeout_s", broker.config.admin_timeout_s)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= _MAX_ADMIN_TIMEOUT_S:
        raise ControlError(BadRequest(f"admin 'timeout_s' must be a number of seconds in (0, {_MAX_ADMIN_TIMEOUT_S:.0f}]"))
    deadline = time.monotonic() + timeout_s
    broker.begin_admin(AdminOperation(client, command.command_id, dict(command.args), deadline))
    return AdminOperation.PENDING


_command_ids = itertools.count(1)


def send_control_command(endpoint: str, command: str, args: JSONObject | None = None, *,
                         keys: DeploymentKeys | None = None, timeout_s: float = 5.0) -> Any:
    """Send one command to a broker's control socket and return its result as plain data.

    With ``keys`` the connection uses CURVE with the admin keypair; without, plain
    (a broker started with --insecure). Raises the broker's typed error, or
    :class:`fluxon.errors.Timeout` when no answer arrives within ``timeout_s``.
    """
    command_id = next(_command_ids)
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, p.MAX_MESSAGE_BYTES)
        if keys is not None:
            configure_curve_client(sock, keys.broker.public, keys.admin)
        watch = HandshakeWatch(sock)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            watch.close()
            raise ConnectionError(f"cannot connect to {endpoint}: {exc}") from exc
        try:
            return _await_result(sock, watch, endpoint, command_id, command, args, keys, timeout_s)
        finally:
            sock.disable_monitor()
            watch.close()


def _await_result(sock: zmq.Socket, watch: HandshakeWatch, endpoint: str, command_id: int, command: str,
                  args: JSONObject | None, keys: DeploymentKeys | None, timeout_s: float) -> Any:
    """Send the command and wait for its RESULT, or for the handshake to fail."""
    sock.send_multipart(p.encode_control_command(command_id, command, args))
    deadline = time.monotonic() + timeout_s
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(watch.monitor, zmq.POLLIN)
    while True:
        remaining_ms = (deadline - time.monotonic()) * 1000
        ready = dict(poller.poll(remaining_ms)) if remaining_ms > 0 else {}
        if watch.monitor in ready and watch.failed():
            raise ConnectionError(describe_handshake_failure(
                watch.failure, where=f"the handshake with the broker's control socket at {endpoint}",
                side="console", secure=keys is not None,
                key_check="--key-file is this deployment's private key (the one the broker was given)",
                plain_fix="give --key-file FILE (or set FLUXON_PRIVATE_KEY) instead of --insecure"),
                details={"endpoint": endpoint})
        if sock not in ready:
            if remaining_ms <= 0 or time.monotonic() >= deadline:
                raise Timeout(f"no answer from the broker's control socket at {endpoint} "
                              f"within {timeout_s:g} s")
            continue
        try:
            result = p.decode_control_result(sock.recv_multipart())
        except ProtocolError:
            continue
        if result.command_id != command_id:
            continue
        if result.status == p.STATUS_OK:
            return result.data
        raise error_from_dict(result.data)
