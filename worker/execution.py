"""Running one request: decode, resolve, call the view, encode the answer or the error.

``def`` views run on threads, as many as the worker's concurrency; ``async def``
views run on the worker's event loop. Every outcome becomes an :class:`Outcome`
(status, session changes, body) and nothing a view does can escape as an exception:

- a :class:`~fluxon.errors.FluxonError` raised by a view travels as itself;
- any other exception becomes :class:`~fluxon.errors.ViewError` with the exception's
  type name in ``details["type"]`` and its message (the traceback only in debug mode);
- a result that cannot be pickled becomes :class:`~fluxon.errors.SerializationError`;
- a failure in Fluxon's own code is logged with its traceback and answered with
  :class:`~fluxon.errors.InternalError`;
- an error whose details are too deep or too large to encode is answered with its
  code and message and the details left out, so a request is always answered.

Payloads are decoded by the restricted decoder within the Router's
:class:`~fluxon.serialization.DecodeLimits`. A small payload is decoded on the event
loop (its budgets make that quick); a larger one in a view thread, even for an
``async def`` view, so that a slow decode never holds up the worker's heartbeats.
A payload refused by a budget is counted in :attr:`ViewRunner.refusals` and logged
(throttled) to ``fluxon.security`` with the limit and the client key.
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
from fluxon.security import RejectionLog
from fluxon.serialization import DEFAULT_DECODE_LIMITS, DecodeLimits, dumps, loads_restricted, loads_trusted

__all__ = ["Outcome", "ViewRunner"]

log = logging.getLogger("fluxon.worker")

#: Parsed session contexts kept (see ViewRunner._context); the table is emptied when full.
_CONTEXT_CACHE_ENTRIES = 1024
#: Contexts longer than this are parsed every time (they would make the table big).
_CONTEXT_CACHE_MAX_BYTES = 4096
_SCALARS = (str, int, float, bool, type(None))
#: Payloads up to this size are decoded on the event loop: within the default budgets
#: such a payload holds at most a few thousand opcodes, a decode of well under a millisecond.
_INLINE_DECODE_BYTES = 4096
#: An error reply whose details nest deeper, hold more values or encode to more bytes than
#: this is sent without its details (json would recurse, the broker would parse megabytes).
_MAX_ERROR_DEPTH = 32
_MAX_ERROR_VALUES = 10_000
_MAX_ERROR_BYTES = 64 * 1024

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

    def __init__(self, router: Router, *, concurrency: int = 16, debug: bool = False, db: Any = None,
                 decode_limits: DecodeLimits | None = None) -> None:
        self.router = router
        self.debug = debug or router.debug
        self.db = db
        self.decode_limits = decode_limits or router.decode_limits or DEFAULT_DECODE_LIMITS
        #: Payloads refused by a decoder budget, by the limit's name (``DecodeLimits`` field).
        self.refusals: collections.Counter[str] = collections.Counter()
        self._refusal_log = RejectionLog()
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
        if len(payload) > _INLINE_DECODE_BYTES:  # decoded in a view thread (see the module docstring)
            self._queue.put((None, (route_name, context, payload), False, callback))
            return
        prepared = self._prepare(route_name, context, payload)
        if isinstance(prepared, Outcome):
            loop.call_soon(callback, prepared)
            return
        route, request, debug = prepared
        if route.is_async:
            self._start_async(route, request, debug, callback)
        else:
            self._queue.put((route, request, debug, callback))

    def _start_async(self, route: Route, request: Request, debug: bool,
                     callback: Callable[[Outcome], None]) -> None:
        # The loop keeps only weak references to tasks: the set holds each one until its
        # coroutine removes it (cheaper than a done callback, which costs a loop iteration).
        self._tasks.add(self._loop.create_task(_run_async(route, request, debug, callback, self._tasks)))

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
            if route.login_required and ctx.get("uid") is None:  # before the decode: no work for anonymous
                Request.from_context(route_name, None, ctx).require_login()
            value = self._decode_payload(payload, ctx)
            request = Request.from_context(route_name, value, ctx, db=self.db)
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

    def _decode_payload(self, payload: bytes, ctx: dict[str, Any]) -> Any:
        if not payload:
            return None
        if ctx.get("trusted"):
            try:
                return loads_trusted(payload)
            except FluxonError as exc:
                raise BadRequest(exc.message) from exc
        try:
            return loads_restricted(payload, self.decode_limits)
        except BadRequest as exc:
            limit = exc.details.get("limit")
            if limit is not None:
                self.refusals[limit] += 1
                key = str(ctx.get("key") or "(plain mode)")
                self._refusal_log.warning(("decode", limit, key), "refused a payload of %d bytes from client "
                                          "key %s: %s", len(payload), key, exc.message)
            raise

    def _thread_main(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            route, request, debug, callback = item
            try:
                if route is None:  # a large payload: decoded here, off the event loop
                    prepared = self._prepare(*request)
                    if isinstance(prepared, Outcome):
                        outcome = prepared
                    elif prepared[0].is_async:
                        self._loop.call_soon_threadsafe(self._start_async, *prepared, callback)
                        continue
                    else:
                        outcome = _call_sync(*prepared)
                else:
                    outcome = _call_sync(route, request, debug)
            except BaseException as exc:  # noqa: BLE001 - this thread must outlive any request
                outcome = _internal(exc, getattr(route, "name", "?"), debug)
            self._done.append((callback, outcome))
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
    if debug:  # the developer is looking: the traceback goes to the worker's log too
        log.error("view for route %r raised %s: %s\n%s", route.name, type(exc).__name__, exc, tb)
    else:
        log.info("view for route %r raised %s: %s", route.name, type(exc).__name__, exc)
        log.debug("traceback of route %r:\n%s", route.name, tb)
    error = ViewError(f"{type(exc).__name__}: {exc}", details={"type": type(exc).__name__},
                      remote_traceback=tb if debug else None)
    return _error(error, debug)


def _internal(exc: BaseException, route_name: str, debug: bool) -> Outcome:
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - a traceback too deep to format
        tb = f"{type(exc).__name__} (traceback could not be formatted)"
    log.error("internal error while handling route %r:\n%s", route_name, tb)
    error = InternalError("internal error in the worker; see its log",
                          remote_traceback=tb if debug else None)
    return _error(error, debug)


def _error(exc: FluxonError, debug: bool) -> Outcome:
    return Outcome(STATUS_ERROR, b"", _encode_error_bounded(exc, debug))


def _encode_error_bounded(exc: FluxonError, debug: bool) -> bytes:
    """The error reply body; without the details when they are too deep or large to send."""
    reason = "nest deeper or hold more values than the worker sends"
    try:
        if _details_within_bounds(exc.details):
            body = encode_error(exc, include_traceback=debug)
            if len(body) <= _MAX_ERROR_BYTES:
                return body
            reason = f"encode to more than {_MAX_ERROR_BYTES} bytes"
    except Exception as failure:  # noqa: BLE001 - RecursionError, MemoryError, a __str__ that raises
        reason = f"could not be encoded ({type(failure).__name__})"
    log.warning("error %s: its details %s; sent without them", exc.code, reason)
    return json.dumps({"code": str(exc.code), "message": str(exc.message)[:4096],
                       "details": {"omitted": f"the error's details {reason}"}}).encode()


def _details_within_bounds(details: Any) -> bool:
    """True when ``details`` nests at most _MAX_ERROR_DEPTH deep and holds at most _MAX_ERROR_VALUES values.

    Walked with an explicit stack: a recursive walk would fail exactly where it matters.
    """
    pending = [(details, 0)]
    seen = 0
    while pending:
        value, depth = pending.pop()
        seen += 1
        if seen > _MAX_ERROR_VALUES or depth > _MAX_ERROR_DEPTH:
            return False
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            if seen + len(pending) + 2 * len(value) > _MAX_ERROR_VALUES:
                return False
            items = (item for pair in value.items() for item in pair) if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
    return True
