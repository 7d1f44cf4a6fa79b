"""The seed's import path for the client: ``from fluxon.connect import ConnectionHandler``."""

from fluxon.client import USE_CLIENT_DEFAULT, AsyncConnectionHandler, ConnectionHandler

__all__ = ["ConnectionHandler", "AsyncConnectionHandler", "USE_CLIENT_DEFAULT"]
