"""The broker's three ROUTER sockets, one function each, so CURVE plugs in per socket.

Every socket sets ``zmq.MAXMSGSIZE`` (libzmq drops the connection of a peer that
sends more), ``zmq.HANDSHAKE_IVL`` (a connection that does not finish its handshake in
time is closed, so idle connections cannot hold file descriptors) and a short linger, so a stopping broker flushes its last replies
without hanging on peers that are gone. In secure mode each socket is a CURVE
server under its own ZAP domain (see :mod:`fluxon.security`).
"""

from __future__ import annotations

import zmq

from fluxon.broker.config import BrokerConfig
from fluxon.errors import ConfigurationError
from fluxon.security import BACKEND_DOMAIN, CONTROL_DOMAIN, FRONTEND_DOMAIN, configure_curve_server

__all__ = ["bind_frontend", "bind_backend", "bind_control"]

_LINGER_MS = 500
_HWM = 100_000


def _router(context: zmq.Context, config: BrokerConfig, zap_domain: str) -> zmq.Socket:
    """A ROUTER with the shared limits; a CURVE server under ``zap_domain`` in secure mode."""
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
    sock.setsockopt(zmq.LINGER, _LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, _HWM)
    sock.setsockopt(zmq.RCVHWM, _HWM)
    sock.setsockopt(zmq.HANDSHAKE_IVL, config.limits.handshake_timeout_ms)  # idle handshakes are closed
    if config.keys is not None:
        configure_curve_server(sock, config.keys.broker, zap_domain)
    return sock


def _bind(sock: zmq.Socket, endpoint: str, name: str) -> str:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise ConfigurationError(f"cannot bind the broker's {name} socket to {endpoint}: {exc}") from exc
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def bind_frontend(context: zmq.Context, config: BrokerConfig) -> tuple[zmq.Socket, str]:
    """The clients' ROUTER; returns the socket and the endpoint it is bound to."""
    sock = _router(context, config, FRONTEND_DOMAIN)
    return sock, _bind(sock, config.frontend, "frontend")


def bind_backend(context: zmq.Context, config: BrokerConfig) -> tuple[zmq.Socket, str]:
    """The workers' ROUTER (ROUTER_MANDATORY: a send to a vanished worker fails instead of vanishing)."""
    sock = _router(context, config, BACKEND_DOMAIN)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    return sock, _bind(sock, config.backend, "backend")


def bind_control(context: zmq.Context, config: BrokerConfig) -> tuple[zmq.Socket, str]:
    """The admin console's ROUTER (only the admin key may connect in secure mode)."""
    if not config.control:
        raise ConfigurationError("the control socket is disabled (control=None)")
    sock = _router(context, config, CONTROL_DOMAIN)
    return sock, _bind(sock, config.control, "control")
