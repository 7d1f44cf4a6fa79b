"""Running one request: decode, resolve, call the view, encode the answer or the error.

``def`` views run on threads, as many as the worker's concurrency; ``async def``
views run on the worker's event loop. Every outcome becomes an :class:`Outcome`
(status, session changes, body) and nothing a view does can escape as an exception:

- a :class:`~fluxon.errors.FluxonError` raised by a view travels as itself;
- any other exception becomes :class:`~fluxon.errors.ViewError` with the exception's
  type name in ``details["type"]`` and its message (the traceback only in debug mode);
- a result that cannot be pickled becomes :class:`~fluxon.errors.SerializationError`;
- a failure in Fluxon's own code is logged with its traceback and answered with
  :class:`~fluxon.errors.InternalError`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

from fluxon.errors import BadRequest, FluxonError, InternalError, ViewError, encode_error
from fluxon.protocol import STATUS_ERROR, STATUS_OK
from fluxon.routing import Request, Route, Router
from fluxon.serialization import dumps, loads_restricted, loads_trusted

__all__ = ["Outcome", "ViewRunner"]

log = logging.getLogger("fluxon.worker")

#: Parsed session contexts kept (see ViewRunner._context); the table is emptied when full.
_CONTEXT_CACHE_ENTRIES = 1024
#: Contexts longer than this are parsed every time (they would make the table big).
_CONTEXT_CACHE_MAX_BYTES = 4096
_SCALARS = (str, int, float, bool, type(None))

class Outcome(NamedTuple):
    """What goes back to the broker for one request."""

    status: int
    changes: bytes
    body: bytes


class ViewRunner:
    """Executes requests against a :class:`~fluxon.routing.Router`.

    ``def`` views run on ``concurrency`` threads fed by one queue; their outcomes
    come back to the event loop in batches (one wake-up for all the outcomes that
    finished meanwhile), which costs far less per request than an executor future
    and a task each.
    """

    def __init__(self, router: Router, *, concurrency: int = 16, debug: bool = False, db: Any = None) -> None:
        self.router = router
        self.debug = debug or router.debug
        self.db = db
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done: collections.deque = collections.deque()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._contexts: dict[bytes, dict[str, Any]] = {}
        self._threads = [threading.Thread(target=self._thread_main, name=f"fluxon-view-{i}", daemon=True)
                         for i in range(max(1, concurrency))]
        for thread in self._threads:
            thread.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the view threads (after the views that are running, when ``wait``)."""
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def submit(self, route_name: str, context: bytes, payload: bytes,
               callback: Callable[[Outcome], None]) -> None:
        """Start one request; ``callback(outcome)`` runs later on the event loop. Never raises."""
        self._loop = loop = asyncio.get_running_loop()
        prepared = self._prepare(route_name, context, payload)
        if isinstance(prepared, Outcome):
            loop.call_soon(callback, prepared)
            return
        route, request, debug = prepared
        if route.is_async:
            # The loop keeps only weak references to tasks: the set holds each one until its
            # coroutine removes it (cheaper than a done callback, which costs a loop iteration).
            self._tasks.add(loop.create_task(_run_async(route, request, debug, callback, self._tasks)))
        else:
            self._queue.put((route, request, debug, callback))

    async def run(self, route_name: str, context: bytes, payload: bytes) -> Outcome:
        """Run one request to completion and return its outcome."""
        future = asyncio.get_running_loop().create_future()
        self.submit(route_name, context, payload, future.set_result)
        return await future

    def _prepare(self, route_name: str, context: bytes, payload: bytes) -> Outcome | tuple[Route, Request, bool]:
        debug = self.debug
        try:
            ctx = self._context(context)
            debug = debug or bool(ctx.get("debug"))
            route = self.router.resolve(route_name)
            value = _decode_payload(payload, trusted=bool(ctx.get("trusted")))
            request = Request.from_context(route_name, value, ctx, db=self.db)
            if route.login_required:
                request.require_login()
        except FluxonError as exc:
            return _error(exc, debug)
        except Exception as exc:  # a bug on our side, not the caller's
            return _internal(exc, route_name, debug)
        return route, request, debug

    def _context(self, context: bytes) -> dict[str, Any]:
        """The parsed session context, from a table when these exact bytes were seen before.

        The broker sends the same context bytes for every request of a session until it
        changes, so most requests skip the JSON parse (about 3 µs). Only contexts whose
        session data holds scalars are kept: a Request copies that mapping one level deep,
        so a view cannot reach into the kept copy.
        """
        ctx = self._contexts.get(context)
        if ctx is None:
            ctx = _parse_context(context)
            data = ctx.get("data")
            if len(context) <= _CONTEXT_CACHE_MAX_BYTES and (
                    not isinstance(data, dict) or all(isinstance(v, _SCALARS) for v in data.values())):
                if len(self._contexts) >= _CONTEXT_CACHE_ENTRIES:
                    self._contexts.clear()
                self._contexts[context] = ctx
        return ctx

    def _thread_main(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            route, request, debug, callback = item
            self._done.append((callback, _call_sync(route, request, debug)))
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self._loop.call_soon_threadsafe(self._flush)
                except RuntimeError:  # the loop closed meanwhile: nobody waits for the outcome
                    self._wake_pending = False

    def _flush(self) -> None:
        """On the loop: hand every finished outcome to its callback."""
        self._wake_pending = False  # first: an outcome appended from now on schedules another flush
        done = self._done
        while done:
            callback, outcome = done.popleft()
            try:
                callback(outcome)
            except Exception:
                log.exception("delivering a view's outcome failed")


async def _run_async(route: Route, request: Request, debug: bool, callback: Callable[[Outcome], None],
                     tasks: set[asyncio.Task]) -> None:
    try:
        try:
            result = await route.view(request)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the view's own failure, SystemExit included
            outcome = _view_failure(exc, route, debug)
        else:
            outcome = _finish(result, request, route, debug)
        callback(outcome)
    finally:
        tasks.discard(asyncio.current_task())


def _parse_context(context: bytes) -> dict[str, Any]:
    if not context:
        return {}
    try:
        ctx = json.loads(context)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"undecodable session context: {exc}") from exc
    if not isinstance(ctx, dict):
        raise BadRequest("the session context is not a JSON object")
    return ctx


def _decode_payload(payload: bytes, *, trusted: bool) -> Any:
    if not payload:
        return None
    if trusted:
        try:
            return loads_trusted(payload)
        except FluxonError as exc:
            raise BadRequest(exc.message) from exc
    return loads_restricted(payload)


def _call_sync(route: Route, request: Request, debug: bool) -> Outcome:
    """Runs in a view thread: call the view and pickle its result there, off the event loop."""
    try:
        result = route.view(request)
    except BaseException as exc:  # noqa: BLE001 - the view's own failure, SystemExit included
        return _view_failure(exc, route, debug)
    return _finish(result, request, route, debug)


def _finish(result: Any, request: Request, route: Route, debug: bool) -> Outcome:
    try:
        body = dumps(result)
        changes = request.session_changes()
    except FluxonError as exc:
        log.warning("route %r: %s", route.name, exc.message)
        return _error(exc, debug)
    except Exception as exc:
        return _internal(exc, route.name, debug)
    return Outcome(STATUS_OK, changes, body)


def _view_failure(exc: BaseException, route: Route, debug: bool) -> Outcome:
    tb = "".join(traceback.format_exception(exc))
    if isinstance(exc, FluxonError):
        if debug and exc.remote_traceback is None:
            exc.remote_traceback = tb
        return _error(exc, debug)
    log.info("view for route %r raised %s: %s", route.name, type(exc).__name__, exc)
    log.debug("traceback of route %r:\n%s", route.name, tb)
    error = ViewError(f"{type(exc).__name__}: {exc}", details={"type": type(exc).__name__},
                      remote_traceback=tb if debug else None)
    return _error(error, debug)


def _internal(exc: Exception, route_name: str, debug: bool) -> Outcome:
    tb = "".join(traceback.format_exception(exc))
    log.error("internal error while handling route %r:\n%s", route_name, tb)
    error = InternalError("internal error in the worker; see its log",
                          remote_traceback=tb if debug else None)
    return _error(error, debug)


def _error(exc: FluxonError, debug: bool) -> Outcome:
    return Outcome(STATUS_ERROR, b"", encode_error(exc, include_traceback=debug))
