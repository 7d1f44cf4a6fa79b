"""Payload and result (de)serialization, with a restricted decoder for untrusted bytes.

Requests travel as pickles (the seed's API sends any Python object), but a pickle
is a program: unpickling network bytes is remote code execution. So:

- the broker never unpickles anything;
- a worker decodes request payloads with :func:`loads_restricted`, an unpickler
  whose ``find_class`` resolves only plain data types (``ALLOWED_GLOBALS``) and
  refuses every other global before any of the payload's code can run;
- payloads from client keys the deployment marks as trusted are decoded with
  :func:`loads_trusted` (full cloudpickle), and so are replies on the client,
  which come from the broker the client authenticated.

Example::

    >>> loads_restricted(dumps({"when": datetime.date(2024, 1, 2)}))
    {'when': datetime.date(2024, 1, 2)}
    >>> loads_restricted(pickle.dumps(os.system))
    Traceback (most recent call last):
    fluxon.errors.BadRequest: payload refers to a forbidden global: posix.system
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import cloudpickle

from fluxon.errors import BadRequest, SerializationError

__all__ = ["ALLOWED_GLOBALS", "dumps", "loads_restricted", "loads_trusted"]

#: (module, qualified name) pairs a restricted payload may name. Builtin containers
#: and scalars (dict, list, str, int, float, bool, None, bytes) need no global at all
#: in pickle protocol 2+; the entries below are what their reconstruction refers to.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "str"),
    ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "complex"), ("builtins", "bool"),
    ("builtins", "NoneType"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("uuid", "UUID"), ("uuid", "SafeUUID"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolve only allow-listed globals; everything else is a :class:`BadRequest`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise BadRequest(f"payload refers to a forbidden global: {module}.{name}",
                         details={"global": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        raise BadRequest("payload uses persistent ids, which are not allowed")


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` with cloudpickle; an unpicklable object raises :class:`SerializationError`."""
    try:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # cloudpickle raises many types: TypeError, PicklingError, ...
        raise SerializationError(f"cannot serialize {type(obj).__name__}: {exc}",
                                 details={"type": type(obj).__name__}) from exc


def loads_restricted(data: bytes) -> Any:
    """Decode untrusted bytes, admitting only plain data types; anything else is :class:`BadRequest`."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except BadRequest:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise a zoo of exception types
        raise BadRequest(f"undecodable payload: {type(exc).__name__}: {exc}") from exc


def loads_trusted(data: bytes) -> Any:
    """Decode bytes from a trusted peer with full (cloud)pickle semantics."""
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"undecodable data: {type(exc).__name__}: {exc}") from exc
