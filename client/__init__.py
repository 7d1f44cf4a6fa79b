"""The client library (imported as ``fluxon.client``).

    from fluxon.client import ConnectionHandler
    with ConnectionHandler("127.0.0.1", 8080, server_key=BROKER_PUBLIC_KEY) as conn:
        conn.send_request("signup", {"username": "ada"})

:class:`AsyncConnectionHandler` is the asyncio twin, with many requests in flight
on one socket. Errors re-raise as the typed :mod:`fluxon.errors` classes.
"""

from fluxon.client.aio import AsyncConnectionHandler
from fluxon.client.base import USE_CLIENT_DEFAULT, BaseClient, ClientState
from fluxon.client.sync import ConnectionHandler

__all__ = ["ConnectionHandler", "AsyncConnectionHandler", "BaseClient", "ClientState", "USE_CLIENT_DEFAULT"]
