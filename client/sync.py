"""The blocking client: ``ConnectionHandler(host, port).send_request(route, payload)``.

Thread safety: each thread that sends gets its own DEALER socket (ZeroMQ sockets
must not be shared between threads), created on its first request; the session
token is shared by all of them. A reply whose request id is not the one the
thread waits for (a late reply to a request that timed out) is discarded.
A thread's socket is closed when the thread ends (so a thread per task leaks
nothing); :meth:`ConnectionHandler.close` closes every socket still open, once
the other threads are done with the client.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import zmq

from fluxon import protocol
from fluxon.client.base import HANDSHAKE_CHECK_S, USE_CLIENT_DEFAULT, BaseClient, UseClientDefault, _Link

__all__ = ["ConnectionHandler"]

_RCVTIMEO = int(zmq.RCVTIMEO)


class ConnectionHandler(BaseClient):
    """Blocking Fluxon client; a context manager, safe to share between threads."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._local = threading.local()
        self._links: list[_Link] = []
        self._links_lock = threading.Lock()

    def __enter__(self) -> "ConnectionHandler":
        with self._links_lock:
            self._check_open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def send_request(self, route: str, payload: Any = None, *,
                     timeout: float | None | UseClientDefault = USE_CLIENT_DEFAULT) -> Any:
        """Call the view mapped to ``route`` with ``payload``; return its result or raise its typed error."""
        timeout_s = self._timeout_for(timeout)
        link = self._thread_link()
        request_id = next(self._ids)
        frames = self._encode(request_id, route, payload, timeout_s)
        sock = link.sock
        protocol.send_frames(sock, frames)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            # A blocking receive bounded by RCVTIMEO: fewer system calls than poll() then recv().
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not link.handshaken:  # wait in slices, watching for a failed handshake
                wait_ms = int(HANDSHAKE_CHECK_S * 1000) if wait_ms < 0 else min(wait_ms, int(HANDSHAKE_CHECK_S * 1000))
            if wait_ms != link.rcvtimeo_ms:  # usually the same as for the last request: skip the call
                sock.setsockopt(_RCVTIMEO, wait_ms)
                link.rcvtimeo_ms = wait_ms
            try:
                frames = protocol.recv_frames(sock)
            except zmq.Again:
                failed = None if link.has_handshaken() else self._handshake_error(link)
                if failed is not None:
                    raise failed from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._timeout_error(link, route, timeout_s) from None
                continue
            link.handshaken = True  # a reply came: no need to watch the monitor any more
            reply = self._decode(frames)
            if reply is not None and reply.request_id == request_id:
                return self._result(reply)
            # anything else is a late reply to an earlier request that timed out: discarded

    def close(self) -> None:
        """Close every socket and the context; the client cannot be used afterwards."""
        with self._links_lock:
            if not self._mark_closed():
                return
            links, self._links = self._links, []
        for link in links:
            link.close()
        if self._ctx is not None:
            self._ctx.term()

    def _thread_link(self) -> _Link:
        holder = getattr(self._local, "holder", None)
        if holder is not None and self._links:
            return holder.link
        with self._links_lock:
            self._check_open()
            link = self._new_link()
            self._links.append(link)
        holder = self._local.holder = _LinkHolder(link)
        # When this thread ends, its thread-local holder is released and the socket with it.
        weakref.finalize(holder, _release_link, weakref.ref(self), link)
        return link


class _LinkHolder:
    """Lives in one thread's thread-local storage; its end marks the end of the thread's socket."""

    __slots__ = ("link", "__weakref__")

    def __init__(self, link: _Link) -> None:
        self.link = link


def _release_link(client_ref: "weakref.ref[ConnectionHandler]", link: _Link) -> None:
    client = client_ref()
    if client is not None:
        with client._links_lock:
            if link not in client._links:  # close() got there first
                return
            client._links.remove(link)
    link.close()
