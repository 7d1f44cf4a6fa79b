"""The asyncio client: many requests in flight on one socket, matched by request id.

The socket is watched through its ``zmq.FD`` with ``loop.add_reader`` and drained
until ``zmq.Again``; the FD is edge-triggered, so it is drained after sends too
(see PERFORMANCE.md: about 3x cheaper than ``zmq.asyncio``). Requests made in one
loop iteration leave together at its end, followed by one drain (see
:meth:`AsyncConnectionHandler._flush`). A request that
times out leaves the table, so its late reply finds no taker and is discarded.
Deadlines share one loop timer (see :class:`_Deadlines`).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any

import zmq

from fluxon import protocol
from fluxon.client.base import USE_CLIENT_DEFAULT, BaseClient, UseClientDefault, _Link
from fluxon.errors import ConfigurationError, ConnectionError

__all__ = ["AsyncConnectionHandler"]


class _Deadlines:
    """The deadlines of one client's requests: a heap of ``(deadline, request_id)`` and ONE loop timer.

    A ``call_later`` per request cost more than the rest of the request's bookkeeping:
    asyncio's timer heap orders its handles with a Python ``__lt__``, and every cancelled
    handle is sifted out again. Here a request costs one ``heappush`` of a tuple; the
    timer is armed for the earliest deadline only. Entries of answered requests stay in
    the heap until they reach its top (or the heap is compacted), so the timer fires
    about once per timeout period, not once per request.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pending: dict[int, asyncio.Future],
                 expire: Callable[[int], None]) -> None:
        self._loop = loop
        self._pending = pending
        self._expire = expire
        self._heap: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, timeout_s: float, request_id: int) -> None:
        """Expire ``request_id`` after ``timeout_s`` unless it has left ``pending`` by then."""
        deadline = self._loop.time() + timeout_s
        heap = self._heap
        heapq.heappush(heap, (deadline, request_id))
        if len(heap) > 1024 and len(heap) > 4 * len(self._pending):  # compact: drop answered requests
            self._heap = heap = [entry for entry in heap if entry[1] in self._pending]
            heapq.heapify(heap)
        if self._timer is None or deadline < self._timer.when():
            self._arm()

    def close(self) -> None:
        """Stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._heap[0][0], self._fire) if self._heap else None

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        heap, pending = self._heap, self._pending
        while heap and (heap[0][0] <= now or heap[0][1] not in pending):
            deadline, request_id = heapq.heappop(heap)
            if deadline <= now and request_id in pending:
                self._expire(request_id)
        self._arm()


class AsyncConnectionHandler(BaseClient):
    """asyncio Fluxon client; an async context manager bound to the loop of its first request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._link: _Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._monitor_fd: int | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._outbox: list[tuple[int, list]] = []
        self._flush_scheduled = False  # a _flush is in the loop's ready queue
        self._deadlines: _Deadlines | None = None

    async def __aenter__(self) -> "AsyncConnectionHandler":
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def send_request(self, route: str, payload: Any = None, *,
                           timeout: float | None | UseClientDefault = USE_CLIENT_DEFAULT) -> Any:
        """Call the view mapped to ``route`` with ``payload``; return its result or raise its typed error."""
        timeout_s = self._timeout_for(timeout)
        link = self._open_link()
        failed = None if link.handshaken else self._handshake_error(link)
        if failed is not None:
            raise failed
        request_id = next(self._ids)
        frames = self._encode(request_id, route, payload, timeout_s)
        future = self._loop.create_future()
        self._pending[request_id] = future
        if timeout_s is not None:
            self._deadlines.add(timeout_s, request_id)
        self._outbox.append((request_id, frames))
        self._schedule_flush()
        try:
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply is None:
            raise self._timeout_error(link, route, timeout_s)
        return self._result(reply)

    async def aclose(self) -> None:
        """Close the socket; requests still waiting fail with ConnectionError."""
        self.close()

    def close(self) -> None:
        """Synchronous form of :meth:`aclose` (for use outside a coroutine)."""
        if not self._mark_closed():
            return
        if self._link is not None:
            if self._fd is not None and self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
                self._loop.remove_reader(self._monitor_fd)
            self._link.close()
            self._link = None
        if self._deadlines is not None:
            self._deadlines.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the client was closed while the request was in flight"))
        self._pending.clear()
        if self._ctx is not None:
            self._ctx.term()

    def _open_link(self) -> _Link:
        loop = asyncio.get_running_loop()
        if self._link is not None:
            if loop is not self._loop:
                raise ConfigurationError("an AsyncConnectionHandler is bound to the event loop of its "
                                         "first request; create one client per event loop")
            return self._link
        self._check_open()
        self._loop = loop
        self._deadlines = _Deadlines(loop, self._pending, self._expire)
        self._link = self._new_link()
        self._fd = self._link.sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        self._monitor_fd = self._link.monitor.getsockopt(zmq.FD)
        loop.add_reader(self._monitor_fd, self._watch_handshake)
        return self._link

    def _watch_handshake(self) -> None:
        """A failed handshake fails every waiting request at once (even those without a timeout)."""
        link = self._link
        if link is None:
            return
        failed = self._handshake_error(link)
        if link.has_handshaken():
            self._loop.remove_reader(self._monitor_fd)  # the broker accepted us: nothing more to watch
            return
        if failed is not None:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(failed)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the requests made since the last flush back to back, then drain.

        Sent one at a time between the callers' Python work, nearly every message found
        libzmq's I/O thread asleep and paid for waking it (about half the client's CPU per
        request at 64 in flight); back to back, one wake-up carries the whole burst. A send
        that fails fails its own request (ConnectionError). The drain follows because a send may have
        consumed the FD's edge.
        """
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        link = self._link
        if link is None or not outbox:  # closed meanwhile (close() failed the waiting requests), or nothing to send
            return
        pending = self._pending
        for request_id, frames in outbox:
            try:
                protocol.send_frames(link.sock, frames)
            except zmq.ZMQError as exc:
                future = pending.get(request_id)
                if future is not None and not future.done():
                    error = ConnectionError(f"cannot send the request to the broker: {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)
        self._drain()

    def _drain(self) -> None:
        """Receive every reply waiting on the socket and hand each to its request.

        One ``ZMQ_EVENTS`` check first (the usual answer after a send is "nothing"), then
        receive until ``zmq.Again`` (see :func:`fluxon.protocol.receive_waiting`).

        When replies were handed out, a flush is queued behind the wake-ups of their
        callers: the requests those callers make next leave in the same loop iteration,
        instead of queueing a flush for the iteration after.
        """
        link = self._link
        if link is None:
            return
        answered = False
        for frames in protocol.receive_waiting(link.sock, ask_at=0):
            reply = self._decode(frames)
            if reply is None:
                continue
            future = self._pending.get(reply.request_id)
            if future is not None and not future.done():
                future.set_result(reply)
                answered = True
            # else: a late reply to a request that timed out; discarded
        if answered:
            self._schedule_flush()

    def _expire(self, request_id: int) -> None:
        future = self._pending.get(request_id)
        if future is not None and not future.done():
            future.set_result(None)


