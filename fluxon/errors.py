"""Fluxon's error hierarchy, shared by the broker, the workers and the clients.

Every error has a stable ``code`` and crosses the wire as data (JSON: code,
message, details, and in debug mode the remote traceback as text), never as a
pickled exception. The client looks the code up and re-raises the same class.

    FluxonError
    ├── RequestError                 the request itself is at fault
    │   ├── BadRequest               malformed or forbidden payload
    │   │   └── ValidationError      a value or key does not fit the model
    │   ├── RouteNotFound            no view is mapped to the route
    │   └── Unauthorized             the session is not allowed to do this
    │       └── InvalidSession       a session token is tampered, foreign or expired
    ├── ServerError                  the server could not produce an answer
    │   ├── ViewError                the view raised an exception
    │   ├── SerializationError       the view's result could not be pickled
    │   ├── InternalError            a bug in Fluxon itself
    │   ├── Overloaded               the broker's queue is full
    │   ├── WorkerLost               the worker died with the request in flight
    │   └── Unavailable              dispatch is paused or shutting down
    ├── TransportError               raised on the client side only
    │   ├── ConnectionError          cannot reach or authenticate the broker
    │   ├── Timeout                  no reply within the timeout
    │   └── ProtocolError            a message that does not follow the protocol
    ├── DatabaseError                the ORM
    │   ├── IntegrityError           a constraint was violated (details: table, fields)
    │   │   ├── UniqueViolation      a UNIQUE constraint or primary key
    │   │   ├── ForeignKeyViolation  a missing parent, or a refused delete (PROTECT)
    │   │   ├── NotNullViolation     a NOT NULL column without a value
    │   │   └── CheckViolation       a CHECK constraint
    │   ├── DoesNotExist             get-one found no row
    │   ├── MultipleObjectsReturned  get-one found more than one row
    │   └── SchemaError              snapshots and migrations
    │       └── DestructiveMigration a step would lose data; needs force
    └── ConfigurationError           developer misuse, with the fix in the message
"""

from __future__ import annotations

import builtins
import json
from typing import Any, ClassVar

__all__ = [
    "FluxonError",
    "RequestError",
    "BadRequest",
    "ValidationError",
    "RouteNotFound",
    "Unauthorized",
    "InvalidSession",
    "ServerError",
    "ViewError",
    "SerializationError",
    "InternalError",
    "Overloaded",
    "WorkerLost",
    "Unavailable",
    "TransportError",
    "ConnectionError",
    "Timeout",
    "ProtocolError",
    "DatabaseError",
    "IntegrityError",
    "UniqueViolation",
    "ForeignKeyViolation",
    "NotNullViolation",
    "CheckViolation",
    "DoesNotExist",
    "MultipleObjectsReturned",
    "SchemaError",
    "DestructiveMigration",
    "ConfigurationError",
    "encode_error",
    "decode_error",
    "error_from_dict",
    "error_class_for",
]

_BY_CODE: dict[str, type["FluxonError"]] = {}


class FluxonError(Exception):
    """Root of every error Fluxon raises on purpose."""

    code: ClassVar[str] = "fluxon_error"

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None,
                 remote_traceback: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.details: dict[str, Any] = dict(details or {})
        self.remote_traceback = remote_traceback

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if code is None:
            raise TypeError(f"{cls.__name__} must define its own stable 'code'")
        if code in _BY_CODE:
            raise TypeError(f"error code {code!r} is already used by {_BY_CODE[code].__name__}")
        _BY_CODE[code] = cls

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keep subclasses picklable with their keyword-only fields
        return (_rebuild_error, (self.code, self.message, self.details, self.remote_traceback))

    def to_dict(self, *, include_traceback: bool = False) -> dict[str, Any]:
        """The error as plain data, the form it takes on the wire."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "details": self.details}
        if include_traceback and self.remote_traceback:
            body["traceback"] = self.remote_traceback
        return body


_BY_CODE[FluxonError.code] = FluxonError


def _rebuild_error(code: str, message: str, details: dict, remote_traceback: str | None) -> FluxonError:
    return error_class_for(code)(message, details=details, remote_traceback=remote_traceback)


class RequestError(FluxonError):
    """The request itself is at fault; sending it again unchanged will fail again."""
    code = "request_error"


class BadRequest(RequestError):
    """The request is malformed or carries a forbidden payload."""
    code = "bad_request"


class ValidationError(BadRequest):
    """A value or a key does not fit the model it is meant for."""
    code = "validation_error"

    @property
    def errors(self) -> dict[str, list[str]]:
        """Field name -> messages: every invalid field of a row (``full_clean``), or the one
        field this error names. Kept in ``details["errors"]`` so it crosses the wire as data."""
        errors = self.details.get("errors")
        if isinstance(errors, dict):
            return {str(k): [str(m) for m in v] if isinstance(v, list) else [str(v)]
                    for k, v in errors.items()}
        field = self.details.get("field")
        return {str(field): [self.message]} if field is not None else {"__all__": [self.message]}


class RouteNotFound(RequestError):
    """No view is mapped to the requested route."""
    code = "route_not_found"


class Unauthorized(RequestError):
    """The session is not allowed to call this view (log in first)."""
    code = "unauthorized"


class InvalidSession(Unauthorized):
    """The session token is tampered, truncated, foreign or expired."""
    code = "invalid_session"


class ServerError(FluxonError):
    """The server could not produce an answer to a valid request."""
    code = "server_error"


class ViewError(ServerError):
    """The view raised an exception; details carry its type name."""
    code = "view_error"

    def __str__(self) -> str:
        """The message, then the remote traceback when the worker sent one (debug mode)."""
        if self.remote_traceback:
            return f"{self.message}\n\nremote traceback (from the worker):\n{self.remote_traceback.rstrip()}"
        return self.message

    @property
    def exc_type(self) -> str:
        """Name of the exception class the view raised (e.g. ``ZeroDivisionError``)."""
        return str(self.details.get("type", ""))


class SerializationError(ServerError):
    """The view's result could not be serialized for the client."""
    code = "serialization_error"


class InternalError(ServerError):
    """An unexpected failure inside Fluxon; the server logged the traceback."""
    code = "internal_error"


class Overloaded(ServerError):
    """The broker's queue is full; try again later."""
    code = "overloaded"


class WorkerLost(ServerError):
    """The worker running the request died before it answered."""
    code = "worker_lost"


class Unavailable(ServerError):
    """The broker is shutting down and takes no new requests."""
    code = "unavailable"


class TransportError(FluxonError):
    """A failure of the connection between client and broker (client side)."""
    code = "transport_error"


class ConnectionError(TransportError, builtins.ConnectionError):  # noqa: A001 - deliberate shadow
    """The broker cannot be reached, or refused our credentials."""
    code = "connection_error"


class Timeout(TransportError, builtins.TimeoutError):
    """No reply arrived within the timeout."""
    code = "timeout"


class ProtocolError(TransportError):
    """A message does not follow the Fluxon wire protocol."""
    code = "protocol_error"


class DatabaseError(FluxonError):
    """A failure in the ORM or the SQLite database."""
    code = "database_error"


class IntegrityError(DatabaseError):
    """A database constraint (unique, not null, foreign key, check) was violated."""
    code = "integrity_error"

    @property
    def table(self) -> str | None:
        """The table whose constraint failed (for a refused delete: the referencing table)."""
        table = self.details.get("table")
        return str(table) if table is not None else None

    @property
    def fields(self) -> list[str]:
        """The columns the constraint covers, as far as the database says."""
        return [str(f) for f in self.details.get("fields") or []]


class UniqueViolation(IntegrityError):
    """A row would duplicate a UNIQUE column (or columns) or a primary key."""
    code = "unique_violation"


class ForeignKeyViolation(IntegrityError):
    """A foreign key points at a missing row, or a delete is refused by PROTECT/RESTRICT."""
    code = "foreign_key_violation"


class NotNullViolation(IntegrityError):
    """A NOT NULL column was given no value."""
    code = "not_null_violation"


class CheckViolation(IntegrityError):
    """A value breaks a CHECK constraint."""
    code = "check_violation"


class DoesNotExist(DatabaseError):
    """A query expected exactly one row and found none."""
    code = "does_not_exist"


class MultipleObjectsReturned(DatabaseError):
    """A query expected exactly one row and found several."""
    code = "multiple_objects_returned"


class SchemaError(DatabaseError):
    """A schema snapshot or migration failed."""
    code = "schema_error"


class DestructiveMigration(SchemaError):
    """The migration would lose data; it needs an explicit force."""
    code = "destructive_migration"


class ConfigurationError(FluxonError):
    """Fluxon is set up wrongly; the message says how to fix it."""
    code = "configuration_error"


def error_class_for(code: str) -> type[FluxonError]:
    """The error class registered for ``code``; unknown codes map to ``FluxonError``."""
    return _BY_CODE.get(code, FluxonError)


def encode_error(exc: FluxonError, *, include_traceback: bool = False) -> bytes:
    """Serialize an error as UTF-8 JSON for an error reply."""
    return json.dumps(exc.to_dict(include_traceback=include_traceback), default=str).encode()


def error_from_dict(body: Any) -> FluxonError:
    """Rebuild the typed error from its plain-data form (:meth:`FluxonError.to_dict`); never raises."""
    if not isinstance(body, dict):
        return ProtocolError("an error body must be a JSON object")
    code = str(body.get("code", FluxonError.code))
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    tb = body.get("traceback")
    return error_class_for(code)(str(body.get("message", "")), details=details,
                                 remote_traceback=tb if isinstance(tb, str) else None)


def decode_error(data: bytes) -> FluxonError:
    """Rebuild the typed error from an error reply body (JSON bytes); never raises on bad input."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return ProtocolError(f"undecodable error reply: {exc}")
    return error_from_dict(body)
