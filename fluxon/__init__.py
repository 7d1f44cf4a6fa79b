"""Fluxon: a CurveZMQ-secured broker, worker processes and a Django-like SQLite ORM."""

__version__ = "0.1.0"

__all__ = ["__version__"]
