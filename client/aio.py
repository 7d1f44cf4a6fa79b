"""The asyncio client: many requests in flight on one socket, matched by request id.

The socket is watched through its ``zmq.FD`` with ``loop.add_reader`` and drained
until ``zmq.Again``; the FD is edge-triggered, so it is drained after sends too
(see PERFORMANCE.md: about 3x cheaper than ``zmq.asyncio``). A request that
times out leaves the table, so its late reply finds no taker and is discarded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import zmq

from fluxon.client.base import USE_CLIENT_DEFAULT, BaseClient, UseClientDefault, _Link
from fluxon.errors import ConfigurationError, ConnectionError

__all__ = ["AsyncConnectionHandler"]

# Plain ints: pyzmq's enum flag arithmetic costs about a microsecond per call on the hot path.
_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)


class AsyncConnectionHandler(BaseClient):
    """asyncio Fluxon client; an async context manager bound to the loop of its first request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._link: _Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._pending: dict[int, asyncio.Future] = {}

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
        request_id = next(self._ids)
        frames = self._encode(request_id, route, payload, timeout_s)
        future = self._loop.create_future()
        self._pending[request_id] = future
        expiry = None if timeout_s is None else self._loop.call_later(timeout_s, self._expire, request_id)
        try:
            link.sock.send_multipart(frames, copy=len(frames) == 1)
            self._drain()  # the send may have consumed the FD's edge
            reply = await future
        finally:
            self._pending.pop(request_id, None)
            if expiry is not None:
                expiry.cancel()
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
            self._link.close()
            self._link = None
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
        self._link = self._new_link()
        self._fd = self._link.sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        return self._link

    def _drain(self) -> None:
        link = self._link
        if link is None:
            return
        sock = link.sock
        while sock.getsockopt(_EVENTS) & _POLLIN:
            try:
                frames = sock.recv_multipart(_NOBLOCK, copy=True)
            except zmq.Again:
                return
            reply = self._decode(frames)
            if reply is None:
                continue
            future = self._pending.get(reply.request_id)
            if future is not None and not future.done():
                future.set_result(reply)
            # else: a late reply to a request that timed out; discarded

    def _expire(self, request_id: int) -> None:
        future = self._pending.get(request_id)
        if future is not None and not future.done():
            future.set_result(None)


