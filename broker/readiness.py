"""Which of the broker's ZeroMQ sockets may hold messages: epoll on their ``zmq.FD`` plus a dirty set.

Why not ``zmq.Poller``: ``zmq_poll`` over the broker's four sockets asks every socket
for ``ZMQ_EVENTS`` before and after blocking, and each query is a ``poll()`` on the
socket's mailbox plus a ``getpid()``: about twenty system calls per request at one
request in flight (strace), where this loop makes five.

The rule that keeps it correct: a socket's ``ZMQ_FD`` only says "commands arrived,
ask ``ZMQ_EVENTS``", and any send, receive or ``ZMQ_EVENTS`` query on that socket may
consume the signal. So a socket is drained when its FD fired, and it is *dirty* when
the broker sent on it (or its drain stopped at the cap): the next round asks a dirty
socket ``ZMQ_EVENTS`` once and drains it if it reports ``POLLIN``. A drain reads until
the socket is empty, which it learns from a ``ZMQ_EVENTS`` query without ``POLLIN`` or
a NOBLOCK receive raising ``zmq.Again`` (either makes libzmq process the socket's
pending commands, so the socket is then clean and its FD fires on the next arrival),
and the loop blocks in epoll only while no socket is dirty.

How a drain ends, and why it asks ``ZMQ_EVENTS`` only once: see
:func:`fluxon.protocol.receive_waiting`, which every drain uses.
"""

from __future__ import annotations

import select

import zmq

__all__ = ["SocketReadiness"]

_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: pyzmq's enums cost ~1 µs a call


class SocketReadiness:
    """Tracks the sockets to drain next; :meth:`wait` blocks only when none is dirty."""

    def __init__(self, sockets: list[zmq.Socket]) -> None:
        self._epoll = select.epoll()
        self._by_fd: dict[int, zmq.Socket] = {}
        for sock in sockets:
            fd = sock.getsockopt(zmq.FD)
            self._by_fd[fd] = sock
            self._epoll.register(fd, select.EPOLLIN)
        self._dirty: set[zmq.Socket] = set(sockets)  # nothing is known about them yet

    def mark(self, sock: zmq.Socket) -> None:
        """``sock`` was used (a send): it may hold messages its FD will not announce."""
        self._dirty.add(sock)

    def wait(self, timeout_s: float) -> set[zmq.Socket]:
        """The sockets to drain now: those whose FD fires within ``timeout_s``, and the dirty ones that hold messages.

        Returns an empty set on timeout. A dirty socket whose FD did not fire is asked
        ``ZMQ_EVENTS`` once (which also re-arms its FD when it is empty): after a send
        the usual answer is "nothing", and the query costs half of the ``zmq.Again`` an
        empty drain ends with. A drain that stops early (its per-round cap) must
        :meth:`mark` its socket again.
        """
        fired = self._epoll.poll(0 if self._dirty else timeout_s)
        dirty, self._dirty = self._dirty, set()
        by_fd = self._by_fd
        ready = {by_fd[fd] for fd, _ in fired}
        for sock in dirty:
            if sock not in ready and sock.getsockopt(_EVENTS) & _POLLIN:
                ready.add(sock)
        return ready

    def close(self) -> None:
        """Release the epoll descriptor."""
        self._epoll.close()
